#!/usr/bin/env bash
# Docker Compose v2, built once from the Go module proxy at a pinned version and
# installed as the docker CLI's `compose` plugin (tests drive it against hyperboxd;
# Debian ships only Compose v1). Cached outside the repository; safe to run again.
set -euo pipefail
version=v2.40.3
cache=${HYPERBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hyperbox}/compose/$version
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
