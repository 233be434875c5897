#!/usr/bin/env bash
# Builds the d2lora container images with Docker or Podman, from the
# repository root's files:
#   d2lora/coordinator:VERSION   docker/Dockerfile.coordinator
#   d2lora/worker:VERSION        docker/Dockerfile.worker (CPU)
#   d2lora/prometheus:debian     docker/Dockerfile.prometheus, only when the
#                                registry's prom/prometheus cannot be pulled
# and prints each one's build time and size. Where no registry can be reached
# the Debian base images (debian:bookworm and debian:bookworm-slim) are made
# locally with debootstrap (root and the debootstrap package; about 2 minutes)
# and imported under the names the Dockerfiles use.
#
#   deploy/images.sh [--engine docker|podman] [--version V] [--jobs N] [--no-prometheus]
#
# Environment: D2LORA_DEBIAN_MIRROR (debootstrap's mirror, http://deb.debian.org/debian),
# PROMETHEUS_IMAGE (the image the compose file runs; default prom/prometheus:v2.53.2).
# The CUDA worker image (docker/Dockerfile.worker-cuda) is not built here: its
# base, nvidia/cuda, comes only from a registry.
# Podman: images are built with --format docker, since the OCI format has no
# HEALTHCHECK; run as root with runc (see deploy/README.md).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ENGINE="" VERSION="" JOBS="$(nproc)" PROMETHEUS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) ENGINE="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --no-prometheus) PROMETHEUS=0; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "images.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
VERSION="${VERSION:-$(sed -n 's/^project(d2lora VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")}"
GIT_COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
PROMETHEUS_IMAGE="${PROMETHEUS_IMAGE:-prom/prometheus:v2.53.2}"
MIRROR="${D2LORA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ -z "$ENGINE" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker
  elif command -v podman >/dev/null; then ENGINE=podman
  else echo "images.sh: neither a running Docker engine nor podman (apt-get install podman runc)" >&2; exit 1
  fi
fi
BUILD_FLAGS=()  # Docker: BuildKit (the default since 23.0) for the cache mount; its --pull is a boolean
[ "$ENGINE" = podman ] && BUILD_FLAGS+=(--format docker --pull=never)
echo "engine: $ENGINE ($($ENGINE --version)); version $VERSION, commit $GIT_COMMIT"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
have_image() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }
pull() { timeout 120 "$ENGINE" pull -q "$1" >/dev/null 2>&1; }
seconds() { echo $(( $(date +%s) - $1 )); }
size_of() {
  local bytes
  bytes=$("$ENGINE" image inspect --format '{{.Size}}' "$1")
  echo "$((bytes / 1000000)) MB"
}

# The Debian base images: from the registry, or made here.
make_debian() {  # RELEASE: debootstrap minbase, imported as debian:RELEASE and debian:RELEASE-slim
  local release="$1" dir="$WORK/debian"
  command -v debootstrap >/dev/null || { echo "images.sh: no registry and no debootstrap (apt-get install debootstrap)" >&2; exit 1; }
  mkdir -p "$dir"
  echo "debian:$release: no registry; debootstrap --variant=minbase $release ($MIRROR)"
  debootstrap --variant=minbase "$release" "$dir/rootfs" "$MIRROR" >"$dir/debootstrap.log" 2>&1 ||
    { tail -20 "$dir/debootstrap.log" >&2; exit 1; }
  # The official image's sources (with updates and security), no package caches.
  rm -f "$dir/rootfs/etc/apt/sources.list"
  cat >"$dir/rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $release $release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$dir/rootfs/var/cache/apt/archives/"*.deb "$dir/rootfs/var/lib/apt/lists/"* "$dir/rootfs/var/log/"*
  tar -C "$dir/rootfs" -c . | "$ENGINE" import --change 'CMD ["bash"]' - "docker.io/library/debian:$release" >/dev/null
  "$ENGINE" tag "docker.io/library/debian:$release" "docker.io/library/debian:$release-slim"
  rm -rf "$dir"
}
t0=$(date +%s)
release=bookworm
if have_image "debian:$release" && have_image "debian:$release-slim"; then
  echo "debian:$release, debian:$release-slim: present"
elif pull "debian:$release" && pull "debian:$release-slim"; then
  echo "debian:$release, debian:$release-slim: pulled ($(seconds "$t0") s)"
else
  make_debian "$release"
  echo "debian:$release (and -slim): made with debootstrap in $(seconds "$t0") s, $(size_of "debian:$release")"
fi

build() {  # NAME DOCKERFILE TAG
  local t
  t=$(date +%s)
  "$ENGINE" build "${BUILD_FLAGS[@]}" -f "$ROOT/$2" -t "$3" \
    --build-arg VERSION="$VERSION" --build-arg GIT_COMMIT="$GIT_COMMIT" --build-arg JOBS="$JOBS" \
    "$ROOT" >"$WORK/$1.log" 2>&1 || { tail -30 "$WORK/$1.log" >&2; echo "images.sh: building $3 failed (log above)" >&2; exit 1; }
  printf '%-28s built in %5d s  %s\n' "$3" "$(seconds "$t")" "$(size_of "$3")"
}
build coordinator docker/Dockerfile.coordinator "d2lora/coordinator:$VERSION"
build worker docker/Dockerfile.worker "d2lora/worker:$VERSION"
if [ "$PROMETHEUS" = 1 ]; then
  if have_image "$PROMETHEUS_IMAGE" || pull "$PROMETHEUS_IMAGE"; then
    echo "$PROMETHEUS_IMAGE: present"
  else
    build prometheus docker/Dockerfile.prometheus d2lora/prometheus:debian
    echo "no $PROMETHEUS_IMAGE here: run compose with PROMETHEUS_IMAGE=d2lora/prometheus:debian"
  fi
fi

# Each image runs as non-root and answers --version.
for image in "d2lora/coordinator:$VERSION" "d2lora/worker:$VERSION"; do
  user=$("$ENGINE" image inspect --format '{{.Config.User}}' "$image")
  case "${user%%:*}" in ""|0|root) echo "images.sh: $image runs as root" >&2; exit 1 ;; esac
  printf '%-28s user %s: %s\n' "$image" "$user" "$("$ENGINE" run --rm --no-healthcheck "$image" --version)"
done
echo "all images in $(seconds "$t0") s"
