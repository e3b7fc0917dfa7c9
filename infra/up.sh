#!/usr/bin/env bash
# The first command of the README: install what is missing, bring the platform up (Temporal, PostgreSQL,
# S3, worker, API), and run the demo pipeline end to end up to its deployment gate.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPERED_ROOT"
bash infra/bootstrap.sh
say "Starting the stack"
tsx infra/src/stack.ts up
say "Generating the demo data (examples/demo/data)"
tsx examples/src/generate.ts examples/demo/data
say "Running the demo pipeline"
tsx services/cli/src/main.ts run examples/demo/pipeline.yaml --follow
say "Up in $(elapsed). Stop everything with: npm stop"
