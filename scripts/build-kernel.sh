#!/usr/bin/env bash
# Builds the minimal guest kernel from Debian's linux-source-6.1 and the config
# fragment kept in guest/kernel/. The result is cached outside the repository,
# keyed by the fragment and the source package version, so a rebuild happens only
# when one of them changes. Prints the path of the ELF vmlinux.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
src_tar=/usr/src/linux-source-6.1.tar.xz
[ -f "$src_tar" ] || { echo "build-kernel: $src_tar missing (apt-get install linux-source-6.1)" >&2; exit 1; }
src_ver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
key=$( (echo "$src_ver"; cat "$repo/guest/kernel/hyperbox.config") | sha256sum | cut -c1-16)
cache=${HYPERBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hyperbox}/kernel/$key
if [ -f "$cache/vmlinux" ]; then echo "$cache/vmlinux"; exit 0; fi
work=$(mktemp -d "${TMPDIR:-/tmp}/hyperbox-kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build-kernel: building guest kernel $key (a few minutes, once)" >&2
tar -C "$work" -xf "$src_tar"
cd "$work"/linux-source-6.1
make -s tinyconfig >&2
scripts/kconfig/merge_config.sh -m .config "$repo/guest/kernel/hyperbox.config" >/dev/null
make -s olddefconfig >&2
# Warn about requested options that Kconfig silently dropped.
while IFS= read -r line; do
  case "$line" in CONFIG_*=*) grep -qx "$line" .config || echo "build-kernel: warning: $line not set" >&2 ;; esac
done < "$repo/guest/kernel/hyperbox.config"
make -s -j"$(nproc)" vmlinux >&2
mkdir -p "$cache"
cp vmlinux "$cache/vmlinux.tmp" && cp .config "$cache/config" && mv "$cache/vmlinux.tmp" "$cache/vmlinux"
echo "$cache/vmlinux"
