#!/usr/bin/env bash
# Create or reuse the project-local virtual environment of the native runtime.
# A stamp (hash of requirements.lock + python version) makes a re-run instant.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RANKFLOW_VENV:-$root/runtime-native/.venv}"
lock="$root/runtime-native/requirements.lock"
py="${RANKFLOW_BASE_PYTHON:-python3}"
if ! command -v "$py" >/dev/null 2>&1; then
  echo "setup-python: '$py' not found; install Python 3.10+ or set RANKFLOW_BASE_PYTHON" >&2
  exit 1
fi
want="$( (cat "$lock"; cat "$root/runtime-native/pyproject.toml"; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)"
stamp="$venv/.rankflow-stamp"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
  echo "setup-python: $venv is up to date"
  exit 0
fi
echo "setup-python: building $venv (torch is a large download on a new machine)"
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$lock"
"$venv/bin/python" -m pip install --quiet --no-deps -e "$root/runtime-native"
"$venv/bin/python" -c 'import torch, numpy, safetensors; print("setup-python: torch", torch.__version__, "numpy", numpy.__version__)'
echo "$want" > "$stamp"
