"""The test bed: real Kamailio, Janus VideoRoom, coturn, a baresip SIP caller and a Chromium participant.

Host-side helpers used by the e2e tests and the demo. Every class owns a private work directory, starts a real
process, waits until it is usable and stops it cleanly (see docs/testbed.md).
"""
