# Shared shell helpers of the infra scripts: progress lines, timing, and failing with a next step.
TEMPERED_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPERED_CACHE_DIR="${TEMPERED_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tempered}"
export TEMPERED_CACHE_DIR
# npm 11 warns about a machine-wide config key on every call; it is not ours to fix.
export npm_config_loglevel="${npm_config_loglevel:-error}"

_t0=$(date +%s)
say()  { printf '\033[1m==>\033[0m %s\n' "$*"; }
ok()   { printf '    %s\n' "$*"; }
die()  { printf '\033[31merror:\033[0m %s\n' "$1" >&2; [ -n "${2:-}" ] && printf '  next: %s\n' "$2" >&2; exit 1; }
elapsed() { echo "$(( $(date +%s) - _t0 ))s"; }
tsx() { "$TEMPERED_ROOT/node_modules/.bin/tsx" "$@"; }
