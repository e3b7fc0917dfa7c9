#!/usr/bin/env bash
# The second command of the README (and all of .ci/run): install what is missing, start a separate test
# stack (own data directory and ports, so a running demo is untouched), then run every test in three lanes side
# by side (see below): type checks, the trainer's pytest suite, and the Node suites (unit, workflows against the
# real server, replay, end to end, the dashboard in a browser).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPERED_ROOT"
bash infra/bootstrap.sh
say "Building the dashboard"
npm run build -w @tempered/dashboard >/dev/null || die "the dashboard did not build" "npm run build -w @tempered/dashboard"

# Two lanes of tests (below) share the cores, so torch's OpenMP threads sleep when idle instead of spinning:
# a spinning thread burns the core another lane's process is waiting for (measured on 2 loaded cores: two
# spinning threads took 1.9x the wall time and 1.8x the CPU of two passive ones for the same work). Every
# trainer and model server of the test stack inherits it (CHILD_ENV_ALLOWED).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export TEMPERED_DATA_DIR="${TEMPERED_TEST_DATA_DIR:-$TEMPERED_ROOT/.tempered/test-data}"
export TEMPERED_PORT_OFFSET="${TEMPERED_PORT_OFFSET:-100}"
say "Starting a fresh test stack in $TEMPERED_DATA_DIR (ports +$TEMPERED_PORT_OFFSET)"
tsx infra/src/stack.ts down >/dev/null 2>&1 || true
rm -rf "$TEMPERED_DATA_DIR"
trap 'say "Stopping the test stack"; tsx infra/src/stack.ts down || true' EXIT
tsx infra/src/stack.ts up

venv="$TEMPERED_CACHE_DIR/venv/$(sha256sum services/trainer/requirements.txt | cut -c1-12)"
node_test() { node --import tsx --test --test-concurrency=1 "$@"; }

if [ -n "${TEMPERED_TESTS:-}" ]; then # one suite (or a few) alone, in order
  # shellcheck disable=SC2086
  node_test $TEMPERED_TESTS
  say "Tests passed in $(elapsed)"
  exit 0
fi

# Three lanes side by side on the one test stack, because much of an end-to-end suite is waiting (canary holds,
# schedules, heartbeats, a browser) that the other lanes' work fills:
#   - the main lane runs, one file after another, every suite whose runs train on the stack's worker (it has one
#     GPU slot, so they would take turns anyway), the dashboard's too. A new test file joins it unless listed below;
#   - the API lane: suites that use the stack's API and Temporal but train nothing on its worker (accounts, bad
#     input, secrets, schedules with stand-in stages on their own pools); mostly waiting, little CPU;
#   - the side lane: what needs no API run: type checks, pytest, unit tests, workflows on their own task queues,
#     stages called in-process, faults on their own pool, the gateway with its own model servers.
# Each suite finds its own runs by id, so another lane's runs in the same lists and inboxes do not disturb it.
side_suites=(tests/unit/*.test.ts tests/workflows/*.test.ts tests/faults/*.test.ts
  tests/integration/data-stages.test.ts tests/integration/data-fuzz.test.ts tests/integration/stage-cache.test.ts tests/integration/labels.test.ts tests/integration/gateway.test.ts
  tests/integration/llamacpp-serving.test.ts tests/integration/data-scale-out.test.ts tests/integration/optimize.test.ts)
api_suites=(tests/integration/accounts.test.ts tests/integration/api.test.ts tests/integration/api-bounds.test.ts
  tests/integration/bad-rows.test.ts tests/integration/secrets.test.ts tests/e2e/schedules.test.ts)
main_suites=()
for f in tests/integration/*.test.ts tests/e2e/*.test.ts tests/browser/*.test.ts; do
  [[ " ${side_suites[*]} ${api_suites[*]} " == *" $f "* ]] || main_suites+=("$f")
done

side_log="$TEMPERED_DATA_DIR/side-lane.log"
(
  set -e
  # One torch thread per trainer in this lane, so that the main lane's trainers (two threads each, from the
  # stack's worker) and this lane's share the two cores instead of oversubscribing them.
  export TEMPERED_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  say "Type checks"
  # Turbo's cache outside the checkout (keyed by every input file's content), so a fresh clone reuses it.
  npx turbo run typecheck --cache-dir="$TEMPERED_CACHE_DIR/turbo" --output-logs=errors-only --log-prefix=none
  say "Trainer tests (pytest)"
  (cd services/trainer && "$venv/bin/python" -m pytest -q --durations=8 tests)
  say "Unit, workflow, in-process stage, gateway and fault tests"
  node_test "${side_suites[@]}"
) >"$side_log" 2>&1 &
side=$!
api_log="$TEMPERED_DATA_DIR/api-lane.log"
(
  set -e
  say "API tests that train nothing on the stack's worker (accounts, bad input, secrets, schedules)"
  node_test "${api_suites[@]}"
) >"$api_log" 2>&1 &
api=$!
say "End-to-end and browser tests (beside them, the API lane in $api_log and the side lane in $side_log)"
main_rc=0
node_test "${main_suites[@]}" || main_rc=$?
api_rc=0
wait "$api" || api_rc=$?
side_rc=0
wait "$side" || side_rc=$?
say "The API lane's report"
cat "$api_log"
say "The side lane's report"
cat "$side_log"
[ "$main_rc" -eq 0 ] || die "a test of the main lane failed (above the other lanes' reports)" "TEMPERED_TESTS=<the failing file> npm test"
[ "$api_rc" -eq 0 ] || die "the API lane failed (its report above)" "TEMPERED_TESTS=<the failing file> npm test"
[ "$side_rc" -eq 0 ] || die "the side lane failed (its report above)" "TEMPERED_TESTS=<the failing file> npm test, or the command it names"
say "All tests passed in $(elapsed)"
