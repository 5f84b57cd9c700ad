#!/usr/bin/env bash
# Builds the docker runtime's images from local files and Debian's
# packages only (the Engine here has no registry to pull from), and prints
# each one's size and build time. What goes into each: docs/images.md.
#
#   scripts/images.sh [IMAGE...]     IMAGE: drone-base frontgate kv web conformance redis mariadb haproxy
#                                    (default: all of them)
#
# Cached between runs: Docker's build cache for the small images, and for
# the Debian ones the root filesystems debootstrap made, with the .debs they
# came from, under $HANGAR_IMAGE_CACHE (default ~/.cache/hangar/images):
# delete a tarball there to rebuild it. Needs root (debootstrap), busybox-static
# and debootstrap (Debian's packages).
set -euo pipefail
cd "$(dirname "$0")/.."

# The classic builder: buildx may not be installed, and FROM scratch or a
# local image is all these Dockerfiles use.
export DOCKER_BUILDKIT=0
cache="${HANGAR_IMAGE_CACHE:-$HOME/.cache/hangar/images}"
suite="${HANGAR_DEBIAN_SUITE:-bookworm}"
mirror="${HANGAR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$cache/debs"
# One build at a time: test packages run in parallel and share the cache.
exec 9>"$cache/.lock"
flock 9
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(drone-base frontgate kv web conformance redis mariadb haproxy)

# The agents, static: they run in any image, whatever its libc.
mkdir -p "$work/bin"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/bin/" ./cmd/drone ./cmd/hangar-supervise ./cmd/frontgate ./cmd/hangar-kv ./cmd/hangar-web

# dbuild TAG CONTEXT: docker build, quiet unless it fails.
dbuild() {
  docker build -q -t "$1" "$2" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; echo "images: docker build $1 failed" >&2; exit 1; }
}

report() { # name tag start
  local size
  size=$(docker image inspect -f '{{.Size}}' "$2")
  printf '%-10s %-24s %7.1f MB  %4ds\n' "$1" "$2" "$(echo "$size / 1000000" | bc -l)" "$(( $(date +%s) - $3 ))"
}

# scratch_ctx DIR: a context with the skeleton every small image has.
scratch_ctx() {
  mkdir -p "$1/etc" "$1/tmp" "$1/hangar/bin"
  chmod 1777 "$1/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$1/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$1/etc/group"
}

busybox_into() { # DIR: busybox-static as /bin/busybox with its applets
  local bb
  bb="$(command -v busybox || true)"
  if [ -z "$bb" ] || ! file -L "$bb" 2>/dev/null | grep -q 'statically linked'; then
    echo "images: a static busybox is needed: apt-get install busybox-static" >&2
    exit 1
  fi
  mkdir -p "$1/bin"
  cp "$bb" "$1/bin/busybox"
  for a in $("$bb" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$1/bin/$a"
  done
}

build_drone_base() {
  local t0 ctx=$work/drone-base
  t0=$(date +%s)
  scratch_ctx "$ctx"
  busybox_into "$ctx"
  cp "$work/bin/drone" "$work/bin/hangar-supervise" "$ctx/hangar/bin/"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY . /
ENV PATH=/usr/local/bin:/usr/bin:/bin:/hangar/bin
ENTRYPOINT ["/hangar/bin/drone"]
DOCKERFILE
  dbuild hangar/drone-base:latest "$ctx"
  report drone-base hangar/drone-base:latest "$t0"
}

build_frontgate() {
  local t0 ctx=$work/frontgate
  t0=$(date +%s)
  scratch_ctx "$ctx"
  cp "$work/bin/frontgate" "$ctx/hangar/bin/frontgate"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY . /
ENTRYPOINT ["/hangar/bin/frontgate"]
DOCKERFILE
  dbuild hangar/frontgate:latest "$ctx"
  report frontgate hangar/frontgate:latest "$t0"
}

# conformance: drone-base whose /hangar/bin/drone only waits for SIGTERM,
# the image `hangar provider test` runs on the docker provider: the suite
# checks the provider, not the agent.
build_conformance() {
  local t0 ctx=$work/conformance
  t0=$(date +%s)
  mkdir -p "$ctx/hangar/bin"
  printf '#!/bin/sh\ntrap "exit 0" TERM\nwhile :; do sleep 1; done\n' >"$ctx/hangar/bin/drone"
  chmod 755 "$ctx/hangar/bin/drone"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM hangar/drone-base:latest
COPY hangar /hangar
DOCKERFILE
  dbuild hangar/conformance:latest "$ctx"
  report conformance hangar/conformance:latest "$t0"
}

build_kv() {
  local t0 ctx=$work/kv
  t0=$(date +%s)
  mkdir -p "$ctx/usr/local/bin"
  cp "$work/bin/hangar-kv" "$ctx/usr/local/bin/hangar-kv"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM hangar/drone-base:latest
COPY usr /usr
DOCKERFILE
  dbuild hangar/kv:1.0 "$ctx"
  report kv hangar/kv:1.0 "$t0"
}

# web: drone-base plus hangar-web, the web role of examples/web (its lb
# role runs hangar/haproxy).
build_web() {
  local t0 ctx=$work/web
  t0=$(date +%s)
  mkdir -p "$ctx/usr/local/bin"
  cp "$work/bin/hangar-web" "$ctx/usr/local/bin/hangar-web"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM hangar/drone-base:latest
COPY usr /usr
DOCKERFILE
  dbuild hangar/web:1.0 "$ctx"
  report web hangar/web:1.0 "$t0"
}

# debian_image NAME TAG PACKAGES: a Debian root filesystem (debootstrap
# minbase plus the app's packages), cached as a tarball, imported with the
# drone added.
debian_image() {
  local name=$1 tag=$2 pkgs=$3 t0 tarball rootfs
  t0=$(date +%s)
  tarball="$cache/$suite-$name-$(echo "$pkgs" | tr ', ' '__').tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { echo "images: debootstrap is needed: apt-get install debootstrap" >&2; exit 1; }
    rootfs="$work/rootfs-$name"
    debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$pkgs" "$suite" "$rootfs" "$mirror" >"$work/debootstrap-$name.log" 2>&1 ||
      { tail -20 "$work/debootstrap-$name.log" >&2; echo "images: debootstrap of $name failed (log above)" >&2; exit 1; }
    # What a container does not need: package lists, docs, caches.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  local ctx=$work/$name
  mkdir -p "$ctx/hangar/bin"
  cp "$work/bin/drone" "$work/bin/hangar-supervise" "$ctx/hangar/bin/"
  docker image inspect "hangar/debian-$name:$suite" >/dev/null 2>&1 && [ "$(docker image inspect -f '{{index .Config.Labels "hangar.rootfs"}}' "hangar/debian-$name:$suite")" = "$(basename "$tarball")" ] ||
    docker import -c "LABEL hangar.rootfs=$(basename "$tarball")" "$tarball" "hangar/debian-$name:$suite" >/dev/null
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM hangar/debian-$name:$suite
COPY hangar /hangar
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/hangar/bin
ENTRYPOINT ["/hangar/bin/drone"]
DOCKERFILE
  dbuild "$tag" "$ctx"
  report "$name" "$tag" "$t0"
}

printf '%-10s %-24s %10s  %5s\n' IMAGE TAG SIZE TIME
for w in "${want[@]}"; do
  case "$w" in
    drone-base) build_drone_base ;;
    frontgate) build_frontgate ;;
    kv) build_kv ;;
    web) build_web ;;
    conformance) build_conformance ;;
    redis) debian_image redis hangar/redis:7.0 redis-server ;;
    mariadb) debian_image mariadb hangar/mariadb:10.11 mariadb-server,mariadb-client ;;
    haproxy) debian_image haproxy hangar/haproxy:2.6 haproxy,socat ;;
    *) echo "images: unknown image $w (drone-base frontgate kv web conformance redis mariadb haproxy)" >&2; exit 2 ;;
  esac
done
