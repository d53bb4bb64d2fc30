#!/usr/bin/env bash
# Build baton's local base images when they are missing (idempotent).
#
# AIR-GAPPED PATH. When no image registry is reachable (no Docker Hub), `FROM python:3.11-slim`
# and `image: redis:7` cannot be pulled, so we make equivalent images ourselves: `debootstrap`
# a Debian bookworm minbase root filesystem and `docker import` it.
#   baton-base:bookworm   python3 (3.11, matches the local torch cp311 wheel), venv, pip, CA certs
#   baton-redis:bookworm  redis-server + redis-cli from Debian, runs as user redis in /data
# The debootstrap tarballs are cached under $BATON_DOCKER_CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/baton/docker), so a second run after `docker rmi` only re-imports.
#
# When a registry IS reachable, skip this script: docker-compose.yml's defaults are the
# official images. This path is selected with
#   BATON_BASE_IMAGE=baton-base:bookworm BATON_REDIS_IMAGE=baton-redis:bookworm docker compose up --build
# (docker/compose-test.sh sets both).
#
# The Debian mirror is the machine's own: the first `deb` source in its apt configuration
# (/etc/apt/sources.list, /etc/apt/sources.list.d/*.list and *.sources) that carries the suite,
# or BATON_DEBIAN_MIRROR when set. No mirror host is written in this repository.
#
# Usage: docker/build-base.sh [--force]     (--force rebuilds tarballs and images)
#        docker/build-base.sh --print-mirror (prints the mirror debootstrap would use)
# Needs root (debootstrap) and a running Docker engine.
set -euo pipefail

SUITE=${BATON_DEBIAN_SUITE:-bookworm}
APT_ETC=${BATON_APT_ETC:-/etc/apt}
CACHE=${BATON_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baton/docker}
# Fixed names (not $BATON_BASE_IMAGE, which may name an official image to pull instead).
BASE_IMAGE=baton-base:$SUITE
REDIS_IMAGE=baton-redis:$SUITE
FORCE=0
[[ ${1:-} == --force ]] && FORCE=1
MIRROR=

TMP_ROOTS=()
cleanup() { local r; for r in "${TMP_ROOTS[@]}"; do rm -rf "$r"; done; }
trap cleanup EXIT

log() { printf '[build-base] %s\n' "$*" >&2; }

# The machine's own Debian mirror (see the header); resolved only when debootstrap runs.
resolve_mirror() {
  [[ -n $MIRROR ]] && return
  if [[ -n ${BATON_DEBIAN_MIRROR:-} ]]; then
    MIRROR=$BATON_DEBIAN_MIRROR
  elif ! MIRROR=$(python3 "$(dirname "${BASH_SOURCE[0]}")/apt_mirror.py" "$SUITE" "$APT_ETC"); then
    log "set BATON_DEBIAN_MIRROR to a Debian archive URI (none found in the apt configuration)"
    exit 1
  fi
}
if [[ ${1:-} == --print-mirror ]]; then
  resolve_mirror
  echo "$MIRROR"
  exit 0
fi

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# make_rootfs NAME PACKAGES SETUP: debootstrap into a temp dir, run SETUP (a shell snippet run
# with $root set), strip apt caches and docs, and write $CACHE/NAME-$SUITE.tar.
make_rootfs() {
  local name=$1 packages=$2 setup=$3
  local tarball=$CACHE/$name-$SUITE.tar
  if [[ -s $tarball && $FORCE == 0 ]]; then
    log "cached rootfs: $tarball"
    return
  fi
  command -v debootstrap >/dev/null || {
    log "debootstrap missing; installing it with apt-get"
    apt-get install -y -q debootstrap >/dev/null
  }
  [[ $(id -u) == 0 ]] || { log "debootstrap needs root"; exit 1; }
  resolve_mirror
  mkdir -p "$CACHE"
  local root
  root=$(mktemp -d "$CACHE/rootfs-$name.XXXXXX")
  TMP_ROOTS+=("$root")
  log "debootstrap $SUITE ($name: $packages) from $MIRROR"
  local t0=$SECONDS
  debootstrap --variant=minbase --include="$packages" "$SUITE" "$root" "$MIRROR" \
    >"$CACHE/debootstrap-$name.log" 2>&1 || {
    log "debootstrap failed; see $CACHE/debootstrap-$name.log"
    tail -20 "$CACHE/debootstrap-$name.log" >&2
    exit 1
  }
  eval "$setup"
  # Slim down like the official debian/python slim images do.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
  find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' \
    -exec rm -rf {} + 2>/dev/null || true
  printf '%s\n' "deb $MIRROR $SUITE main" >"$root/etc/apt/sources.list"
  : >"$root/etc/hostname"
  : >"$root/etc/resolv.conf"
  tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$root"
  log "rootfs $name ready in $((SECONDS - t0))s: $(du -h "$tarball" | cut -f1)"
}

import_image() {
  local name=$1 image=$2; shift 2
  log "docker import $CACHE/$name-$SUITE.tar as $image"
  docker import "$@" "$CACHE/$name-$SUITE.tar" "$image" >/dev/null
}

docker info >/dev/null 2>&1 || { log "Docker engine not reachable (is dockerd running?)"; exit 1; }

if [[ $FORCE == 1 ]] || ! have_image "$BASE_IMAGE"; then
  make_rootfs base "python3,python3-venv,python3-pip,ca-certificates" ':'
  import_image base "$BASE_IMAGE" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]'
else
  log "image present: $BASE_IMAGE"
fi

if [[ $FORCE == 1 ]] || ! have_image "$REDIS_IMAGE"; then
  # /data owned by the redis user: a fresh named volume mounted there inherits that ownership.
  # shellcheck disable=SC2016  # $root expands later, inside make_rootfs
  make_rootfs redis "redis-server,redis-tools,ca-certificates" \
    'mkdir -p "$root/data" && chroot "$root" chown redis:redis /data && chmod 0750 "$root/data"'
  import_image redis "$REDIS_IMAGE" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'USER redis' \
    --change 'WORKDIR /data' \
    --change 'VOLUME /data' \
    --change 'EXPOSE 6379' \
    --change 'CMD ["redis-server", "--protected-mode", "no"]'
else
  log "image present: $REDIS_IMAGE"
fi

docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' \
  | grep -E "^(${BASE_IMAGE}|${REDIS_IMAGE})\b" >&2 || true
