# One worker "machine" of the one-machine Swarm lab (scripts/swarm-lab, sipmediagw/testbed/swarmlab.py): a Docker
# engine inside a container. Debian packages only, FROM the offline base image (docker/make-base-image.sh), so the lab
# needs no container registry on the Internet. Build (swarmlab.py does it with docker-py):
#   DOCKER_BUILDKIT=0 docker build -t sipmediagw-lab-node:latest -f docker/lab/node.Dockerfile docker/lab
#
# The engine is NOT started by the image: swarmlab.py starts dockerd with `docker exec` (its flags: its own bridge
# subnet and address pool, a TCP listener) so that killing it later simulates losing the machine while the container
# — and therefore the node's address — stays. swarmlab.py also copies the lab registry's certificate into
# /etc/docker/certs.d/<registry>/ca.crt here. PID 1 is Docker's init (`docker run --init`), which reaps what
# a killed engine orphans; the command below only keeps the container up and shows the engine's log in `docker logs`.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive

# policy-rc.d: the maintainer scripts must not try to start dockerd/containerd inside the build.
# procps: pgrep, to keep the engine's start idempotent; iptables: dockerd's NAT for the containers it runs.
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \
 && chmod 0755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends docker.io iptables ca-certificates procps \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/* /usr/share/info/* \
           /var/log/apt /var/log/dpkg.log

# The keeper's pid is recorded so that "kill every process of this machine" (swarmlab.stop_worker_engine) spares it.
CMD ["sh", "-c", "echo $$ >/run/sipmediagw-lab-keeper.pid && touch /var/log/dockerd.log && exec tail -n +1 -F /var/log/dockerd.log"]
