#!/usr/bin/env bash
# The guardrails, in order: typecheck (tsc), lint (ESLint: floating promises, no Node built-ins in workflow
# code, the one-way layer rule), format (prettier --check), import cycles (madge), ruff (the Python runtime),
# and that the contract's JSON Schemas are generated from the current zod schemas. `npm run check`; `npm test` (and so `.ci/run`) runs it before the tests.
# Every step runs; the exit code is non-zero if any failed.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
failed=()
step() { # step NAME command...
  local name="$1"; shift
  local t0; t0=$(date +%s)
  echo "== check: $name"
  if "$@"; then echo "check: $name ok ($(( $(date +%s) - t0 )) s)"; else echo "check: $name FAILED" >&2; failed+=("$name"); fi
}
step "typecheck (tsc --noEmit)" npm run --silent typecheck
step "lint (eslint)" npm run --silent lint
step "format (prettier --check)" npm run --silent format:check
step "import cycles (madge)" npm run --silent check:imports
step "ruff (runtime-native)" npm run --silent ruff
step "generated contract (npm run gen -- --check --contract-only)" npm run --silent gen -- --check --contract-only
if ((${#failed[@]})); then
  echo "check: failed: ${failed[*]}" >&2
  exit 1
fi
echo "check: all passed"
