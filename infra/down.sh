#!/usr/bin/env bash
# Stops the local stack (and any model server it started); data stays in the data directory.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPERED_ROOT"
[ -x node_modules/.bin/tsx ] || die "node_modules is missing" "npm ci"
tsx infra/src/stack.ts down
