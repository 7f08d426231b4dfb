#!/usr/bin/env bash
# Runs every test: set-up (cached), the guardrails (scripts/check.sh: tsc, eslint, prettier, madge, ruff),
# then vitest's unit project (no servers), vitest's integration project (the real Temporal dev server and
# SeaweedFS S3 server, started by its global setup), then pytest (the Python runtime).
# Ends with one line `tests: N passed, N failed, N skipped` over all suites.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh || { echo "tests: set-up failed" >&2; exit 1; }

out="$root/.state/test-reports"
mkdir -p "$out"
export RANKFLOW_WORKER_LOG_LEVEL="${RANKFLOW_WORKER_LOG_LEVEL:-ERROR}"

echo "== checks"
bash scripts/check.sh
check_rc=$?

vitest_rc=0
for project in unit integration; do
  echo "== vitest ($project)"
  t0=$(date +%s)
  npx vitest run --project "$project" --reporter=default --reporter=json --outputFile.json="$out/vitest-$project.json" || vitest_rc=1
  echo "vitest ($project) took $(( $(date +%s) - t0 )) s"
done

echo "== pytest"
t0=$(date +%s)
( cd runtime-native && .venv/bin/python -m pytest -q -rs --junitxml="$out/pytest.xml" tests )
pytest_rc=$?
echo "pytest took $(( $(date +%s) - t0 )) s"

node --input-type=module - "$out/pytest.xml" "$out/vitest-unit.json" "$out/vitest-integration.json" <<'JS'
import { readFileSync, existsSync } from 'node:fs';
const [pytestFile, ...vitestFiles] = process.argv.slice(2);
let passed = 0, failed = 0, skipped = 0;
for (const vitestFile of vitestFiles) {
  if (existsSync(vitestFile)) {
    const v = JSON.parse(readFileSync(vitestFile, 'utf8'));
    passed += v.numPassedTests; failed += v.numFailedTests; skipped += v.numPendingTests + v.numTodoTests;
    if (!v.success && v.numFailedTests === 0) failed += 1; // a suite that failed to load
  } else failed += 1;
}
if (existsSync(pytestFile)) {
  const x = readFileSync(pytestFile, 'utf8');
  const m = /<testsuite[^>]*errors="(\d+)"[^>]*failures="(\d+)"[^>]*skipped="(\d+)"[^>]*tests="(\d+)"/.exec(x);
  if (m) {
    const [errors, failures, skips, tests] = m.slice(1).map(Number);
    failed += errors + failures; skipped += skips; passed += tests - errors - failures - skips;
  } else failed += 1;
} else failed += 1;
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
JS
[[ $check_rc -eq 0 ]] || echo "tests: the checks failed (see '== checks' above)" >&2
[[ $check_rc -eq 0 && $vitest_rc -eq 0 && $pytest_rc -eq 0 ]]
