#!/usr/bin/env bash
# Create or reuse the project-local virtual environment of the native runtime.
# A stamp (hash of the lock files, pyproject.toml and the Python version) makes a re-run instant;
# a changed lock installs on top of the existing environment (pip skips what is already there).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RANKFLOW_VENV:-$root/runtime-native/.venv}"
locks=("$root/runtime-native/requirements.lock" "$root/runtime-native/requirements-test.lock")
py="${RANKFLOW_BASE_PYTHON:-python3}"
if ! command -v "$py" >/dev/null 2>&1; then
  echo "setup-python: '$py' not found; install Python 3.10+ or set RANKFLOW_BASE_PYTHON" >&2
  exit 1
fi
want="$( (cat "${locks[@]}" "$root/runtime-native/pyproject.toml"; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)"
stamp="$venv/.rankflow-stamp"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
  echo "setup-python: $venv is up to date"
  exit 0
fi
if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup-python: creating $venv (torch is a large download on a new machine)"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
else
  echo "setup-python: updating $venv"
fi
for lock in "${locks[@]}"; do
  "$venv/bin/python" -m pip install --quiet -r "$lock"
done
"$venv/bin/python" -m pip install --quiet --no-deps -e "$root/runtime-native"
"$venv/bin/python" -c 'import torch, numpy, safetensors; print("setup-python: torch", torch.__version__, "numpy", numpy.__version__)'
echo "$want" > "$stamp"
