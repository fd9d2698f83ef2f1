# sipmediagw gateway image: one container = one gateway (Xvfb x2, PulseAudio, baresip, Chromium, Python supervisor).
# Debian packages only (no PyPI, no downloads): see docs/container.md. Build with `sipmediagw build` (it sends the
# allow-list of sipmediagw/buildcontext.py), or with the classic builder (.dockerignore lets through the same files):
#   DOCKER_BUILDKIT=0 docker build -t sipmediagw:latest .
# Hosts without a registry make the base image offline first: docker/make-base-image.sh
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# SLIM=1 drops Mesa's DRI drivers / LLVM / z3 / icon theme after install: Chromium renders with its bundled
# SwiftShader under Xvfb and baresip draws with plain X11, so none of them is used (about 170 MB less).
ARG SLIM=1

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/opt/sipmediagw/lib

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      chromium chromium-driver \
      xvfb x11-utils xdotool \
      pulseaudio pulseaudio-utils \
      baresip-core baresip-ffmpeg baresip-x11 \
      ffmpeg \
      python3 python3-selenium python3-yaml python3-psutil \
      fonts-liberation fonts-dejavu-core \
      ca-certificates \
 && if [ "$SLIM" = "1" ]; then \
      dpkg --purge --force-depends libgl1-mesa-dri libllvm15 libz3-4 adwaita-icon-theme 2>/dev/null || true; \
    fi \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/* /usr/share/info/* \
           /var/log/apt /var/log/dpkg.log

# Non-root user with a fixed uid/gid: the host writes the account secret for uid 10001 (docs/contracts.md).
RUN groupadd --gid 10001 gw \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/gw --shell /usr/sbin/nologin gw \
 && mkdir -p /var/log/sipmediagw /run/secrets /opt/sipmediagw/browsing /opt/sipmediagw/baresip /tmp/.X11-unix \
 && chown gw:gw /var/log/sipmediagw \
 && chmod 0755 /run/secrets \
 && chmod 1777 /tmp/.X11-unix

# Default drivers and templates; `sipmediagw launch` mounts the host's folders over them (read-only).
COPY browsing/ /opt/sipmediagw/browsing/
COPY baresip/config_default /opt/sipmediagw/baresip/config_default
COPY docker/pulse/ /opt/sipmediagw/docker/pulse/
# The package alone under lib/ (on PYTHONPATH): /opt/sipmediagw/docker must not shadow docker-py as a namespace package.
COPY sipmediagw/ /opt/sipmediagw/lib/sipmediagw/

USER gw
WORKDIR /home/gw
EXPOSE 5060/udp 5060/tcp

HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-m", "sipmediagw.gateway.health"]

ENTRYPOINT ["python3", "-m", "sipmediagw.gateway"]
