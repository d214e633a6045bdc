#!/usr/bin/env bash
# The Kubernetes side of the set-up (issue 16): Debian's containerd (run by the
# tests themselves, never through systemd), Debian's CNI plugins (/usr/lib/cni) and crictl + critest built from the Go
# module proxy at a pinned cri-tools version, cached outside the repository so a
# second run does nothing. Prints the directory holding crictl and critest.
set -euo pipefail
CRI_TOOLS_VERSION=v1.34.0
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if ! command -v containerd >/dev/null || ! command -v ctr >/dev/null || [ ! -x /usr/lib/cni/bridge ]; then
  say "installing Debian's containerd and CNI plugins"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends containerd containernetworking-plugins >/dev/null
fi

bin=${HYPERBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hyperbox}/cri-tools/$CRI_TOOLS_VERSION
if [ ! -x "$bin/crictl" ] || [ ! -x "$bin/critest" ]; then
  PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null || { echo "setup-cri: Go is needed to build crictl and critest" >&2; exit 1; }
  say "building crictl and critest $CRI_TOOLS_VERSION (once)"
  mkdir -p "$bin"
  GOBIN="$bin.tmp" go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION" >&2
  # critest is a Go test binary: built with `go test -c` in a writable copy of the module.
  go mod download "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" >&2
  src=$(go list -m -f '{{.Dir}}' "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" 2>/dev/null || echo "$(go env GOMODCACHE)/sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION")
  work=$(mktemp -d "${TMPDIR:-/tmp}/cri-tools.XXXXXX")
  cp -r "$src"/. "$work" && chmod -R u+w "$work"
  (cd "$work" && go test -c -o "$bin.tmp/critest" ./cmd/critest >&2)
  rm -rf "$work"
  mv "$bin.tmp"/crictl "$bin.tmp"/critest "$bin"/ && rmdir "$bin.tmp"
fi
echo "$bin"
