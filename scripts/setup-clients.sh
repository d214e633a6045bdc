#!/usr/bin/env bash
# The Docker clients the tests drive besides the docker CLI and dockerode, at pinned
# versions, cached outside the repository (safe to run again):
# - Docker Compose v2, built from the Go module proxy and installed as the docker
#   CLI's `compose` plugin (Debian ships only Compose v1, installed by setup.sh);
# - the Docker SDK for Python, in a virtualenv linked at build/pysdk.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${HYPERBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hyperbox}

version=v2.40.3
cache=$root/compose/$version
plugins=/usr/local/lib/docker/cli-plugins
if [ ! -x "$cache/docker-compose" ]; then
  PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null || { echo "setup-compose: Go is needed to build docker compose $version" >&2; exit 1; }
  mkdir -p "$cache"
  # Built as the main module (its go.mod has exclude directives, which `go install pkg@version` refuses).
  src=$(cd /tmp && go mod download -json "github.com/docker/compose/v2@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -o "$cache/docker-compose.tmp" \
    -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$version" ./cmd)
  mv "$cache/docker-compose.tmp" "$cache/docker-compose"
fi
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO mkdir -p "$plugins"
$SUDO ln -sf "$cache/docker-compose" "$plugins/docker-compose"

sdk=7.1.0
venv=$root/pysdk/docker-$sdk
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import docker' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "docker==$sdk"
fi
mkdir -p build
ln -sfn "$venv" build/pysdk
