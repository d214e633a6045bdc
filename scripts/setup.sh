#!/usr/bin/env bash
# One-time set-up of a Debian 12 machine for hyperbox: system packages, the guest
# kernel (built once, cached outside the repo), the guest agent, the TypeScript
# build and a local busybox:latest image. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

packages=(qemu-system-x86 qemu-utils linux-source-6.1 busybox-static musl-tools build-essential
  flex bison bc libelf-dev libssl-dev cpio file runc tmux util-linux
  clang libclang-rt-14-dev
  docker-registry skopeo umoci debootstrap apache2-utils openssl curl attr sqlite3 iproute2 iptables zstd bubblewrap passt
  erofs-utils e2fsprogs docker-compose python3-venv)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

say "guest kernel"
mkdir -p build/guest
kernel=$(scripts/build-kernel.sh)
ln -sf "$kernel" build/guest/vmlinux

say "guest agent and initramfs"
make -s -C guest

say "test clients: docker compose v2 (built once from the Go module proxy), the Docker SDK for Python"
scripts/setup-clients.sh

say "TypeScript"
[ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error
npx tsc -p .

say "containerd, crictl and critest for the containerd shim's tests (cached)"
scripts/setup-cri.sh >/dev/null

say "busybox:latest image"
[ -f build/busybox-rootfs.tar ] || scripts/make-busybox-rootfs.sh build/busybox-rootfs.tar
if ! bin/hyperbox inspect busybox:latest >/dev/null 2>&1; then
  bin/hyperbox import -c 'CMD ["sh"]' build/busybox-rootfs.tar busybox:latest >/dev/null
fi
say "Debian root filesystem for the image tests (debootstrap, cached)"
scripts/make-debian-rootfs.sh build/debian-rootfs.tar

say "ready: try  bin/hyperbox run --rm busybox echo hello"
