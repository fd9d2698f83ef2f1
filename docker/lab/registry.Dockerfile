# The registry of the one-machine Swarm lab (scripts/swarm-lab, sipmediagw/testbed/swarmlab.py): Debian's
# docker-registry (distribution 2.8.2) FROM the offline base image, so every node pulls the gateway image from one
# place. Build (swarmlab.py does it with docker-py):
#   DOCKER_BUILDKIT=0 docker build -t sipmediagw-lab-registry:latest -f docker/lab/registry.Dockerfile docker/lab
#
# HTTPS with a certificate made at first start for the addresses in $REGISTRY_SAN (e.g. IP:172.17.0.1,IP:127.0.0.1),
# kept in the data volume. swarmlab.py gives its certificate to every engine as /etc/docker/certs.d/ADDR:5000/ca.crt,
# which Docker reads on each connection: the manager then resolves image digests (all nodes run the same image) and
# no engine needs `insecure-registries` (nor a restart). No authentication: it is published only on this host's Docker
# bridge address and 127.0.0.1. A real deployment uses a certificate from its CA and authentication.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive

# policy-rc.d: the package's postinst would otherwise try to start the registry inside the build.
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \
 && chmod 0755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends docker-registry openssl \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/* /usr/share/info/* \
           /var/log/apt /var/log/dpkg.log

# Debian's config.yml asks for htpasswd authentication from a file the package does not ship; this one serves the lab
# without it, over TLS, stores blobs in /var/lib/docker-registry (a named volume at run time) and allows deletes.
RUN printf '%s\n' \
      'version: 0.1' \
      'log:' \
      '  level: warn' \
      '  fields:' \
      '    service: registry' \
      'storage:' \
      '  filesystem:' \
      '    rootdirectory: /var/lib/docker-registry' \
      '  delete:' \
      '    enabled: true' \
      'http:' \
      '  addr: :5000' \
      '  tls:' \
      '    certificate: /var/lib/docker-registry/tls/cert.pem' \
      '    key: /var/lib/docker-registry/tls/key.pem' \
      '  headers:' \
      '    X-Content-Type-Options: [nosniff]' \
      >/etc/docker/registry/config.yml

# A new key and self-signed certificate when there is none for these addresses yet (the volume keeps it across
# restarts), then the registry itself as PID 1's only child.
RUN printf '%s\n' \
      '#!/bin/sh' \
      'set -eu' \
      'tls=/var/lib/docker-registry/tls' \
      ': "${REGISTRY_SAN:?REGISTRY_SAN must name the addresses, e.g. IP:172.17.0.1,IP:127.0.0.1}"' \
      'if [ ! -s "$tls/cert.pem" ] || [ "$(cat "$tls/san" 2>/dev/null)" != "$REGISTRY_SAN" ]; then' \
      '  mkdir -p "$tls"' \
      '  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \' \
      '    -subj /CN=sipmediagw-lab-registry -addext "subjectAltName=$REGISTRY_SAN" \' \
      '    -addext basicConstraints=critical,CA:TRUE -keyout "$tls/key.pem" -out "$tls/cert.pem" 2>/dev/null' \
      '  printf %s "$REGISTRY_SAN" >"$tls/san"' \
      'fi' \
      'exec /usr/bin/docker-registry serve /etc/docker/registry/config.yml' \
      >/usr/local/bin/lab-registry \
 && chmod 0755 /usr/local/bin/lab-registry

USER docker-registry
EXPOSE 5000
CMD ["/usr/local/bin/lab-registry"]
