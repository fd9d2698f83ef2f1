"""The swarm tier: a 3-node Docker Swarm on this machine (scripts/swarm-lab), brought up once for the package."""
