#!/usr/bin/env bash
# The quickstart on the embedded default: set-up (cached), then a real sweep of recipes/quickstart.yaml on
# the CPU (a local Temporal dev server and S3 server are started for you), ending with the comparison table.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
node cli/bin.mjs submit recipes/quickstart.yaml "$@"
