#!/usr/bin/env bash
# Build the service binaries into the project-local tools folder (.tools/bin, git-ignored):
#   temporal  Temporal CLI with its dev server (go install github.com/temporalio/cli/cmd/temporal@v1.5.1)
#   weed      SeaweedFS (S3 gateway, filer, master, volume in one binary)
# Usage: bash scripts/install-tools.sh [temporal|seaweedfs|all]   (default: all)
#
# A stamp next to each binary records what it was built from; a re-run with a matching stamp does nothing.
# Each built binary is also kept in a per-user cache (RANKFLOW_TOOLS_CACHE, default
# ${XDG_CACHE_HOME:-~/.cache}/rankflow/tools, keyed by module@version and Go version), so a fresh clone on
# the same machine (CI) links it in instead of rebuilding. Go's own caches are used as configured
# (GOMODCACHE, GOCACHE). To measure a cold build, point all three at empty folders.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${RANKFLOW_TOOLS_BIN:-$root/.tools/bin}"
cache="${RANKFLOW_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rankflow/tools}"
mkdir -p "$bin"

TEMPORAL_MODULE="github.com/temporalio/cli"
TEMPORAL_VERSION="v1.5.1"   # newer tags carry a replace directive that 'go install pkg@version' refuses
# SeaweedFS tags releases as "4.xx" (not semver), so the module proxy serves it only by pseudo-version.
SEAWEEDFS_MODULE="github.com/seaweedfs/seaweedfs"
SEAWEEDFS_VERSION="v0.0.0-20261109003541-7506e5f91cd6"

if ! command -v go >/dev/null 2>&1; then
  echo "install-tools: 'go' not found; install Go 1.26 or newer (https://go.dev/doc/install) and re-run" >&2
  exit 1
fi
gover="$(go env GOVERSION)"

stamp_ok() { # $1 binary, $2 wanted stamp text
  [[ -x "$1" && -f "$1.stamp" && "$(cat "$1.stamp")" == "$2" ]]
}

cache_key() { # $1 tool name, $2 stamp text
  echo "$1-$(printf '%s' "$2" | sha256sum | cut -c1-16)"
}

from_cache() { # $1 tool name, $2 stamp text: link or copy a cached build into place; fails when there is none
  local src; src="$cache/$(cache_key "$1" "$2")"
  [[ -x "$src" ]] || return 1
  rm -f "$bin/$1"
  if ! ln "$src" "$bin/$1" 2>/dev/null; then # a hard link when on the same file system, else a copy
    cp "$src" "$bin/$1.tmp.$$" && mv -f "$bin/$1.tmp.$$" "$bin/$1" || { rm -f "$bin/$1.tmp.$$"; return 1; }
  fi
  echo "$2" > "$bin/$1.stamp"
  echo "install-tools: $1 taken from the build cache $cache"
}

to_cache() { # $1 tool name, $2 stamp text (best effort: a read-only cache only costs the next clone a build)
  mkdir -p "$cache" 2>/dev/null || return 0
  local dst; dst="$cache/$(cache_key "$1" "$2")"
  [[ -x "$dst" ]] && return 0
  { ln "$bin/$1" "$dst.tmp.$$" 2>/dev/null || cp "$bin/$1" "$dst.tmp.$$" 2>/dev/null; } && mv -f "$dst.tmp.$$" "$dst" ||
    rm -f "$dst.tmp.$$"
}

install_temporal() {
  local want="$TEMPORAL_MODULE/cmd/temporal@$TEMPORAL_VERSION $gover"
  if stamp_ok "$bin/temporal" "$want"; then
    echo "install-tools: temporal $TEMPORAL_VERSION is up to date"
    to_cache temporal "$want"
    return
  fi
  from_cache temporal "$want" && return
  echo "install-tools: building temporal $TEMPORAL_VERSION (a few minutes on a cold Go cache)"
  # Build in a temporary GOBIN and move into place, so an interrupted build never leaves a half binary.
  local tmp; tmp="$(mktemp -d "$bin/.build.XXXXXX")"
  (cd "$tmp" && GOBIN="$tmp" go install "$TEMPORAL_MODULE/cmd/temporal@$TEMPORAL_VERSION")
  mv -f "$tmp/temporal" "$bin/temporal"
  rm -rf "$tmp"
  echo "$want" > "$bin/temporal.stamp"
  to_cache temporal "$want"
}

install_seaweedfs() {
  local want="$SEAWEEDFS_MODULE/weed@$SEAWEEDFS_VERSION $gover"
  if stamp_ok "$bin/weed" "$want"; then
    echo "install-tools: seaweedfs $SEAWEEDFS_VERSION is up to date"
    to_cache weed "$want"
    return
  fi
  from_cache weed "$want" && return
  echo "install-tools: building seaweedfs $SEAWEEDFS_VERSION (several minutes on a cold Go cache)"
  # 'go install module/weed@version' refuses this module because its go.mod has a replace directive
  # (go-bip39 => cosmos/go-bip39). Building inside the downloaded module makes it the main module, so the
  # replace applies and go.sum (shipped in the module) pins every dependency.
  local dir
  dir="$(go mod download -json "$SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [[ -z "$dir" || ! -f "$dir/go.mod" ]]; then
    echo "install-tools: could not download $SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION from the Go module proxy" >&2
    exit 1
  fi
  local tmp; tmp="$(mktemp -d "$bin/.build.XXXXXX")"
  (cd "$dir" && GOFLAGS="${GOFLAGS:-} -mod=readonly" go build -o "$tmp/weed" ./weed)
  mv -f "$tmp/weed" "$bin/weed"
  rm -rf "$tmp"
  echo "$want" > "$bin/weed.stamp"
  to_cache weed "$want"
}

case "${1:-all}" in
  temporal) install_temporal ;;
  seaweedfs|weed) install_seaweedfs ;;
  all) install_temporal; install_seaweedfs ;;
  *) echo "install-tools: unknown tool '$1' (expected temporal, seaweedfs or all)" >&2; exit 2 ;;
esac
