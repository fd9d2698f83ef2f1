#!/bin/sh
# Make the Dockerfile's base image offline, for hosts that cannot reach a container registry (CI, this test bed):
# debootstrap a minimal Debian bookworm from the Debian mirror and `docker import` it under the standard tag, so the
# Dockerfile stays `FROM debian:bookworm-slim` for everyone. Idempotent: does nothing when the tag already exists.
#
# usage: docker/make-base-image.sh [TAG] [MIRROR]
#   TAG     default debian:bookworm-slim (the Dockerfile's BASE_IMAGE)
#   MIRROR  default http://deb.debian.org/debian
# needs: root, docker, debootstrap (apt-get install debootstrap)
set -eu

TAG="${1:-debian:bookworm-slim}"
MIRROR="${2:-http://deb.debian.org/debian}"
SUITE=bookworm

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "make-base-image: $TAG already exists, nothing to do"
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "make-base-image: debootstrap is missing (apt-get install debootstrap)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "make-base-image: must run as root (debootstrap needs it)" >&2
    exit 1
fi

ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/sipmediagw-rootfs.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT INT TERM

echo "make-base-image: debootstrap --variant=minbase $SUITE from $MIRROR (about a minute)"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
    echo "make-base-image: debootstrap failed; last lines of $ROOTFS.log:" >&2
    tail -n 20 "$ROOTFS.log" >&2
    exit 1
}
rm -f "$ROOTFS.log"
# What the official slim image does: no apt caches or lists, an apt source that works inside builds.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
# What the official slim image leaves out too: translations, documentation (copyright files kept), man and info pages
# (about 42 MB); the gateway image's dpkg filter (Dockerfile) keeps them out of the packages installed on top.
find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
find "$ROOTFS/usr/share/doc" -type f ! -name copyright -delete
rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
echo "deb $MIRROR $SUITE main" > "$ROOTFS/etc/apt/sources.list"
echo "deb $MIRROR $SUITE-updates main" >> "$ROOTFS/etc/apt/sources.list"
echo "deb http://deb.debian.org/debian-security $SUITE-security main" >> "$ROOTFS/etc/apt/sources.list"

tar -C "$ROOTFS" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --message "debootstrap --variant=minbase $SUITE (sipmediagw docker/make-base-image.sh)" \
    - "$TAG" >/dev/null
echo "make-base-image: imported $TAG"
