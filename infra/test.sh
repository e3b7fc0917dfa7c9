#!/usr/bin/env bash
# The second command of the README (and all of .ci/run): install what is missing, start a separate test
# stack (own data directory and ports, so a running demo is untouched), then run every test: type checks,
# the trainer's pytest suite, and the Node suites (unit, workflows against the real server, replay,
# end to end, the dashboard in a browser).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPERED_ROOT"
bash infra/bootstrap.sh
say "Building the dashboard"
npm run build -w @tempered/dashboard >/dev/null || die "the dashboard did not build" "npm run build -w @tempered/dashboard"

export TEMPERED_DATA_DIR="${TEMPERED_TEST_DATA_DIR:-$TEMPERED_ROOT/.tempered/test-data}"
export TEMPERED_PORT_OFFSET="${TEMPERED_PORT_OFFSET:-100}"
say "Starting a fresh test stack in $TEMPERED_DATA_DIR (ports +$TEMPERED_PORT_OFFSET)"
tsx infra/src/stack.ts down >/dev/null 2>&1 || true
rm -rf "$TEMPERED_DATA_DIR"
trap 'say "Stopping the test stack"; tsx infra/src/stack.ts down || true' EXIT
tsx infra/src/stack.ts up

say "Type checks"
npx turbo run typecheck --output-logs=errors-only --log-prefix=none

say "Trainer tests (pytest)"
venv="$TEMPERED_CACHE_DIR/venv/$(sha256sum services/trainer/requirements.txt | cut -c1-12)"
(cd services/trainer && "$venv/bin/python" -m pytest -q tests)

say "Unit, workflow, replay, end-to-end and browser tests"
node --import tsx --test --test-concurrency=1 ${TEMPERED_TESTS:-tests/unit/*.test.ts tests/integration/*.test.ts tests/workflows/*.test.ts tests/e2e/*.test.ts tests/browser/*.test.ts tests/faults/*.test.ts}
say "All tests passed in $(elapsed)"
