# sipmediagw gateway image: one container = one gateway (Xvfb x2, PulseAudio, baresip, Chromium, Python supervisor).
# Debian packages only (no PyPI, no downloads): see docs/container.md. Build with `sipmediagw build` (it sends the
# allow-list of sipmediagw/buildcontext.py), or with the classic builder (.dockerignore lets through the same files):
#   DOCKER_BUILDKIT=0 docker build -t sipmediagw:latest .
# Hosts without a registry make the base image offline first: docker/make-base-image.sh
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# SLIM=1 removes after install what only Depends chains bring and no running gateway opens (measured: which files
# the processes of gateway containers open during calls, docs/container.md "What takes the space"), 200 MB in all:
# Mesa's DRI drivers / LLVM / z3 / icon theme (Chromium renders with its bundled SwiftShader under Xvfb, baresip
# draws with plain X11); systemd and the session-bus glue that pulls it in (no init, no login session here);
# GStreamer + iso-codes (PulseAudio's RTP modules, never loaded); DirectFB (baresip's directfb module, never
# configured); FFTW (PulseAudio's virtual-surround module, never loaded).
ARG SLIM=1

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/opt/sipmediagw/lib

# Files dpkg never unpacks (path filters, for every package installed below), none opened by a running gateway:
# translations (LANG=C.UTF-8; the copyright files stay), docs, man/info pages, Chromium's Vulkan validation layer and
# mock driver (debugging only), the Intel Media SDK's GPU back ends (libmfx.so.1 itself stays: libavutil links it) and
# the flite voices and lexicons libavfilter does not link. About 120 MB.
RUN printf '%s\n' \
      'path-exclude=/usr/share/locale/*' 'path-include=/usr/share/locale/locale.alias' \
      'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
      'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' 'path-exclude=/usr/share/lintian/*' \
      'path-exclude=/usr/lib/chromium/libVkLayer_khronos_validation.so*' \
      'path-exclude=/usr/lib/chromium/libVkICD_mock_icd.so*' \
      'path-exclude=/usr/lib/*/libmfxhw64.so*' 'path-exclude=/usr/lib/*/libmfx-tracer.so*' \
      'path-exclude=/usr/lib/*/mfx/*' \
      'path-exclude=/usr/lib/*/libflite_cmu_grapheme_*' 'path-exclude=/usr/lib/*/libflite_cmu_indic_*' \
      'path-exclude=/usr/lib/*/libflite_cmu_time_awb.so*' \
      > /etc/dpkg/dpkg.cfg.d/sipmediagw-unused

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
      dpkg --purge --force-depends \
        libgl1-mesa-dri libllvm15 libz3-4 adwaita-icon-theme \
        systemd systemd-sysv libpam-systemd dbus-user-session libsystemd-shared libcryptsetup12 libdevmapper1.02.1 \
        dmsetup libargon2-1 libjson-c5 libkmod2 libip4tc2 libfdisk1 \
        libgstreamer1.0-0 libgstreamer-plugins-base1.0-0 iso-codes libdw1 libelf1 \
        libdirectfb-1.7-7 libfftw3-single3; \
    fi \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log

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
# The HEALTHCHECK runs every 5 s: a shell reading the supervisor's health file costs under 1 ms of CPU where starting
# Python cost 30-50 ms (1 % of a core: an idle pool gateway's whole budget). The script is health.SHELL_CHECK, written
# out here so it has one home. Compiled bytecode: each Python start imports without compiling (measured 0.12-0.16 s ->
# 0.09-0.10 s of CPU).
RUN python3 -c "from sipmediagw.gateway.health import SHELL_CHECK; open('/opt/sipmediagw/healthcheck.sh', 'w').write(SHELL_CHECK + '\n')" \
 && python3 -m compileall -q /opt/sipmediagw/lib

USER gw
WORKDIR /home/gw
EXPOSE 5060/udp 5060/tcp

HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sh", "/opt/sipmediagw/healthcheck.sh"]

ENTRYPOINT ["python3", "-m", "sipmediagw.gateway"]
