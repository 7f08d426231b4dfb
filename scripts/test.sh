#!/usr/bin/env bash
# Runs every test: set-up (cached), then vitest (TypeScript: unit tests and integration tests that start
# the real Temporal dev server and SeaweedFS S3 server themselves), then pytest (the Python runtime).
# Ends with one line `tests: N passed, N failed, N skipped` over both suites.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh || { echo "tests: set-up failed" >&2; exit 1; }

out="$root/.state/test-reports"
mkdir -p "$out"
export RANKFLOW_WORKER_LOG_LEVEL="${RANKFLOW_WORKER_LOG_LEVEL:-ERROR}"

echo "== vitest"
t0=$(date +%s)
npx vitest run --reporter=default --reporter=json --outputFile.json="$out/vitest.json"
vitest_rc=$?
echo "vitest took $(( $(date +%s) - t0 )) s"

echo "== pytest"
t0=$(date +%s)
( cd runtime-native && .venv/bin/python -m pytest -q -rs --junitxml="$out/pytest.xml" tests )
pytest_rc=$?
echo "pytest took $(( $(date +%s) - t0 )) s"

node --input-type=module - "$out/vitest.json" "$out/pytest.xml" <<'JS'
import { readFileSync, existsSync } from 'node:fs';
const [vitestFile, pytestFile] = process.argv.slice(2);
let passed = 0, failed = 0, skipped = 0;
if (existsSync(vitestFile)) {
  const v = JSON.parse(readFileSync(vitestFile, 'utf8'));
  passed += v.numPassedTests; failed += v.numFailedTests + (v.numFailedTestSuites ?? 0) * 0; skipped += v.numPendingTests + v.numTodoTests;
  if (!v.success && v.numFailedTests === 0) failed += 1; // a suite that failed to load
} else failed += 1;
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
[[ $vitest_rc -eq 0 && $pytest_rc -eq 0 ]]
