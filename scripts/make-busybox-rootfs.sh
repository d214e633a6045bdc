#!/usr/bin/env bash
# Builds a busybox root filesystem tarball from Debian's busybox-static: the
# image behind `busybox:latest`, so a first run needs no registry.
set -euo pipefail
out=${1:?usage: make-busybox-rootfs.sh OUT.tar}
bb=/bin/busybox
[ -x "$bb" ] || { echo "busybox-static is not installed" >&2; exit 1; }
file -L "$bb" 2>/dev/null | grep -q 'statically linked' || { echo "$bb is not static (install busybox-static)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,etc,root,tmp,var,home,proc,sys,dev,usr/bin,usr/sbin,sbin}
cp "$bb" "$tmp/bin/busybox"
for applet in $("$bb" --list-full); do
  [ "$applet" = bin/busybox ] && continue
  mkdir -p "$tmp/$(dirname "$applet")"
  ln -sf /bin/busybox "$tmp/$applet"
done
chmod 1777 "$tmp/tmp"; chmod 700 "$tmp/root"
cat > "$tmp/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
P
cat > "$tmp/etc/group" <<'G'
root:x:0:
daemon:x:1:
nogroup:x:65534:
G
tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$tmp" -cf "$out.tmp" .
mv "$out.tmp" "$out"
