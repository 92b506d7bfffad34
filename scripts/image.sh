#!/usr/bin/env bash
# `make image`: build the agent and governor images from deploy/daemonset/Dockerfile with the host's
# container tool: podman (installed here with runc when missing), else docker.
#
#   IMAGE_TAG=bcgov:0.1.0 GOVERNOR_TAG=bcgov-governor:0.1.0   the tags
#   BASE=debian:bookworm     use a registry's Debian image instead of the locally made one
#   BCGOV_IMAGE_TARGETS="agent governor"                      which stages to build
#
# Without BASE, the base image is made from Debian's packages (debootstrap --variant=minbase
# bookworm), no registry needed, and cached: as the image localhost/debian:bookworm and as a tarball
# in /var/cache/bcgov, so only a fresh machine pays the ~1 minute. Podman runs with runc (crun
# refuses hybrid cgroup hosts) and explicit rlimits (the defaults are refused here). The host's CA
# certificates reach pip as a build secret only, never a layer (see the Dockerfile).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf 'image: %s\n' "$*" >&2; }
die() { printf 'image: error: %s\n' "$*" >&2; exit 2; }

agent_tag=${IMAGE_TAG:-bcgov:0.1.0}
governor_tag=${GOVERNOR_TAG:-bcgov-governor:0.1.0}
targets=${BCGOV_IMAGE_TARGETS:-agent governor}
local_base=localhost/debian:bookworm
cache=/var/cache/bcgov
ca=/etc/ssl/certs/ca-certificates.crt

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
need_pkgs() {
  local missing=()
  for p in "$@"; do installed "$p" || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: run 'sudo make image' (it installs them)"
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install podman (or docker) and debootstrap by hand"
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The tool: podman where it is or can be installed (Debian), else a working docker engine.
if command -v podman >/dev/null || command -v apt-get >/dev/null; then
  need_pkgs podman runc
  tool=(podman)
  run_flags=(--runtime runc --ulimit nofile=20000:20000 --ulimit nproc=32768:32768
             --ignorefile "$root/deploy/daemonset/Dockerfile.dockerignore")
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  tool=(docker)
  run_flags=()
else
  die "no container tool: install podman (apt-get install podman runc) or start a docker engine"
fi

base=${BASE:-}
if [ -z "$base" ]; then
  base=$local_base
  if ! "${tool[@]}" image exists "$base" 2>/dev/null && ! "${tool[@]}" image inspect "$base" >/dev/null 2>&1; then
    tarball=$cache/debian-bookworm-minbase-slim.tar
    if [ ! -s "$tarball" ]; then
      need_pkgs debootstrap
      [ "$(id -u)" -eq 0 ] || die "debootstrap needs root: run 'sudo make image'"
      say "making the Debian bookworm base image with debootstrap (about a minute, cached in $cache)"
      mkdir -p "$cache"
      rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
      trap 'rm -rf "$rootfs"' EXIT
      debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
        || die "debootstrap failed (log: $cache/debootstrap.log): check the network and http://deb.debian.org"
      # No docs, man pages or translations in the base, nor in what later layers install (dpkg
      # path-exclude); apt's caches and lists are rebuilt by the build's own apt-get update.
      rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
      find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
      printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' \
        'path-exclude=/usr/share/locale/*' 'path-include=/usr/share/locale/locale.alias' \
        >"$rootfs"/etc/dpkg/dpkg.cfg.d/bcgov-slim
      tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
      rm -rf "$rootfs"
    fi
    say "importing $tarball as $base"
    "${tool[@]}" import "$tarball" "$base" >/dev/null 2>&1
  fi
fi

mkdir -p "$root/var"  # build logs go there; var/ is not in git, so a fresh clone has none
secret=()
[ -s "$ca" ] && secret=(--secret "id=hostca,src=$ca")
for target in $targets; do
  case $target in
    agent) tag=$agent_tag ;;
    governor) tag=$governor_tag ;;
    *) die "unknown image target '$target': agent or governor" ;;
  esac
  say "building $tag (stage $target, base $base)"
  start=$(date +%s)
  previous=$("${tool[@]}" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  "${tool[@]}" build "${run_flags[@]}" "${secret[@]}" -f "$root/deploy/daemonset/Dockerfile" \
    --build-arg "BASE=$base" --target "$target" -t "$tag" "$root" >"$root/var/image-$target.log" 2>&1 \
    || { tail -n 30 "$root/var/image-$target.log" >&2; die "building $tag failed (whole log: var/image-$target.log)"; }
  size=$("${tool[@]}" image inspect --format '{{.Size}}' "$tag")
  # The image this build replaced is untagged now: remove it (only it), so rebuilds do not pile up.
  current=$("${tool[@]}" image inspect --format '{{.Id}}' "$tag")
  if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    "${tool[@]}" rmi "$previous" >/dev/null 2>&1 || true
  fi
  say "built $tag in $(( $(date +%s) - start ))s: $(( size / 1000000 )) MB"
done
