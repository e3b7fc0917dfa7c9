#!/usr/bin/env bash
# `npm run bench`: benchmarks, each with its baseline in the same run; figures go to tests/bench/results/.
# Uses the test stack's data directory and ports so a running demo is untouched.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPERED_ROOT"
bash infra/bootstrap.sh
export TEMPERED_DATA_DIR="${TEMPERED_BENCH_DATA_DIR:-$TEMPERED_ROOT/.tempered/bench-data}"
export TEMPERED_PORT_OFFSET="${TEMPERED_PORT_OFFSET:-200}"
say "Starting the bench stack in $TEMPERED_DATA_DIR (ports +$TEMPERED_PORT_OFFSET)"
trap 'tsx infra/src/stack.ts down >/dev/null || true' EXIT
tsx infra/src/stack.ts up
for bench in tests/bench/*.bench.ts; do
  say "$bench"
  tsx "$bench"
done
venv="$TEMPERED_CACHE_DIR/venv/$(sha256sum services/trainer/requirements.txt | cut -c1-12)"
base_models="${TEMPERED_BASE_MODELS_DIR:-$TEMPERED_CACHE_DIR/base-models}"
for bench in tests/bench/*.py; do
  say "$bench"
  case "$bench" in
    # LoRA on the real base model the bootstrap converted (SmolLM2-135M-Instruct), on the sentiment example's data.
    */lora_throughput.py) "$venv/bin/python" "$bench" --base-model "$base_models/smollm2-135m-instruct/model" ;;
    # The model server, one request at a time against dynamic batching, serving the same real base model.
    */serve_throughput.py) "$venv/bin/python" "$bench" --base-model "$base_models/smollm2-135m-instruct/model" ;;
    # GGUF per quantization (size, llama.cpp tokens/s beside the torch server's, exact match against fp32).
    */gguf.bench.py) "$venv/bin/python" "$bench" --base-model "$base_models/smollm2-135m-instruct/model" ;;
    *) "$venv/bin/python" "$bench" ;;
  esac
done
