#!/usr/bin/env bash
# Builds a minimal Debian 12 root filesystem tarball with debootstrap (from
# Debian's mirror, the one network source we have), cached outside the repo:
# the "real distribution" image of the image tests and the pull benchmark.
set -euo pipefail
out=${1:?usage: make-debian-rootfs.sh OUT.tar}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/hyperbox/rootfs
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cached="$cache/debian-bookworm-minbase.tar"
if [ ! -f "$cached" ]; then
  mkdir -p "$cache"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  debootstrap --variant=minbase bookworm "$tmp/root" "$mirror" >"$tmp/log" 2>&1 || { tail -20 "$tmp/log" >&2; exit 1; }
  rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*
  tar --numeric-owner --xattrs --sort=name -C "$tmp/root" -cf "$cached.tmp" .
  mv "$cached.tmp" "$cached"
fi
ln -sf "$cached" "$out"
