#!/usr/bin/env bash
# The first command of the README: install what is missing, bring the platform up (Temporal, PostgreSQL,
# S3, worker, API), and run the demo pipeline end to end up to its deployment gate.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPERED_ROOT"
bash infra/bootstrap.sh
say "Building the dashboard"
npm run build -w @tempered/dashboard >/dev/null || die "the dashboard did not build" "npm run build -w @tempered/dashboard"
say "Starting the stack"
tsx infra/src/stack.ts up
data="${TEMPERED_DATA_DIR:-$TEMPERED_ROOT/.tempered/data}"
if [ ! -e "$data/run/credentials-shown" ]; then
  # Once, at the first start: who can sign in. Afterwards only the mode-600 file has the passwords.
  node -e 'const c=require(process.argv[1]); for (const [u,v] of Object.entries(c)) console.log(`    ${u.padEnd(9)} (${v.role}) password ${v.password}`)' "$data/credentials.json"
  ok "These users can sign in to the dashboard; their passwords and API tokens stay in $data/credentials.json (mode 600)."
  touch "$data/run/credentials-shown"
fi
say "Generating the demo data (examples/demo/data)"
tsx examples/src/generate.ts examples/demo/data
say "Running the demo pipeline"
tsx services/cli/src/main.ts run examples/demo/pipeline.yaml --follow
say "Up in $(elapsed). Dashboard: http://127.0.0.1:$(( ${TEMPERED_API_PORT:-$(( 8080 + ${TEMPERED_PORT_OFFSET:-0} ))} ))/ — stop everything with: npm stop"
