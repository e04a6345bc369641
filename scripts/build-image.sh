#!/usr/bin/env bash
# Build the remediator image from wheels made on this machine, so that nothing inside the
# build needs the network.
#
#   scripts/build-image.sh [TAG]          (default TAG: remediator:local)
#
# 1. `pip wheel . -w build/wheels`: the project and every dependency, as wheels, built here.
# 2. The base image: $REMEDIATOR_BASE_IMAGE when set (e.g. python:3.11-slim, pulled as usual);
#    otherwise a local Debian bookworm base made with `debootstrap --variant=minbase` (python3,
#    python3-venv, postgresql-client, ca-certificates) and `docker import`, tagged by a hash
#    of what goes into it, so a second run reuses it. Making it needs root and debootstrap
#    (about two minutes; $REMEDIATOR_DEBIAN_MIRROR picks the mirror).
# 3. `docker build --build-arg BASE=... -t TAG .` (the Dockerfile installs build/wheels only).
# It prints the image's size and the time each step took.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${1:-remediator:local}
suite=bookworm
mirror=${REMEDIATOR_DEBIAN_MIRROR:-http://deb.debian.org/debian}
base_packages=python3,python3-venv,postgresql-client,ca-certificates
t0=$SECONDS

rm -rf build/wheels
mkdir -p build
# async-timeout: redis needs it on Python < 3.11.3 (Debian bookworm has 3.11.2), which the
# Python running this script may not.
python3 -m pip wheel --quiet --disable-pip-version-check -w build/wheels . 'async-timeout>=4.0.3' \
  2>build/pip-wheel.log || { tail -n 30 build/pip-wheel.log >&2; exit 1; }
t_wheels=$((SECONDS - t0))

t1=$SECONDS
base=${REMEDIATOR_BASE_IMAGE:-}
if [ -z "$base" ]; then
  digest=$(printf '%s\n' "$suite" "$base_packages" minbase nodocs | sha256sum | cut -c1-12)
  base="local/remediator-base:$suite-$digest"
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 1; }
    echo "making the base image $base with debootstrap ($suite, $mirror)"
    rootfs=$(mktemp -d "${TMPDIR:-/tmp}/remediator-base.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include="$base_packages" "$suite" "$rootfs" "$mirror" \
      >build/debootstrap.log 2>&1 || { tail -n 30 build/debootstrap.log >&2; exit 1; }
    # No package caches, documentation or translations in an image (about 55 MB).
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
           "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/usr/share/doc/* \
           "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    tar --numeric-owner -C "$rootfs" -c . | docker import \
      --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
  fi
fi
t_base=$((SECONDS - t1))

t2=$SECONDS
previous=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
docker build --quiet --build-arg "BASE=$base" -t "$tag" . >/dev/null
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]; then
  docker image rm "$previous" >/dev/null 2>&1 || true  # the image this build replaced, if unused
fi
# The legacy builder keeps the builder stage as an untagged image: drop it (only those).
docker image prune --force --filter label=org.remediator.stage=builder >/dev/null
t_build=$((SECONDS - t2))

size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "image $tag on $base: $((size / 1000000)) MB ($size bytes)"
echo "time: wheels ${t_wheels}s, base ${t_base}s, docker build ${t_build}s, total $((SECONDS - t0))s"
