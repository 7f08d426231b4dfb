#!/usr/bin/env bash
# Build the service binaries into the project-local tools folder (.tools/bin, git-ignored):
#   temporal  Temporal CLI with its dev server (go install github.com/temporalio/cli/cmd/temporal@v1.5.1)
#   weed      SeaweedFS (S3 gateway, filer, master, volume in one binary)
# Usage: bash scripts/install-tools.sh [temporal|seaweedfs|all]   (default: all)
#
# A stamp next to each binary records what it was built from; a re-run with a matching stamp does nothing.
# Go's own caches are used as configured (GOMODCACHE, GOCACHE; by default ~/go/pkg/mod and ~/.cache/go-build),
# so a second clone on the same machine builds from cache in seconds. Set them to empty folders to measure
# a cold build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${RANKFLOW_TOOLS_BIN:-$root/.tools/bin}"
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

install_temporal() {
  local want="$TEMPORAL_MODULE/cmd/temporal@$TEMPORAL_VERSION $gover"
  if stamp_ok "$bin/temporal" "$want"; then
    echo "install-tools: temporal $TEMPORAL_VERSION is up to date"
    return
  fi
  echo "install-tools: building temporal $TEMPORAL_VERSION (a few minutes on a cold Go cache)"
  # Build in a temporary GOBIN and move into place, so an interrupted build never leaves a half binary.
  local tmp; tmp="$(mktemp -d "$bin/.build.XXXXXX")"
  (cd "$tmp" && GOBIN="$tmp" go install "$TEMPORAL_MODULE/cmd/temporal@$TEMPORAL_VERSION")
  mv -f "$tmp/temporal" "$bin/temporal"
  rm -rf "$tmp"
  echo "$want" > "$bin/temporal.stamp"
}

install_seaweedfs() {
  local want="$SEAWEEDFS_MODULE/weed@$SEAWEEDFS_VERSION $gover"
  if stamp_ok "$bin/weed" "$want"; then
    echo "install-tools: seaweedfs $SEAWEEDFS_VERSION is up to date"
    return
  fi
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
}

case "${1:-all}" in
  temporal) install_temporal ;;
  seaweedfs|weed) install_seaweedfs ;;
  all) install_temporal; install_seaweedfs ;;
  *) echo "install-tools: unknown tool '$1' (expected temporal, seaweedfs or all)" >&2; exit 2 ;;
esac
