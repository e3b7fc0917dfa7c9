#!/usr/bin/env bash
# Installs everything Tempered needs on this machine, and only what is missing: npm packages, the Temporal
# CLI and the S3 server (built from their Go modules), the Python ML runtime (a venv keyed by
# services/trainer/requirements.txt), and Chromium for the browser tests (Debian's, with apt-get). Caches
# live outside the repo (TEMPERED_CACHE_DIR, Go's and pip's own caches), so a fresh clone on a machine that
# has run this before takes seconds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPERED_ROOT"

TEMPORAL_CLI_VERSION=v1.5.1   # its go.mod has no replace directive, so `go install` can build it
VERSITYGW_VERSION=v1.8.0
BIN="$TEMPERED_CACHE_DIR/bin"
mkdir -p "$BIN"

say "Checking toolchains"
command -v node >/dev/null || die "Node.js is not installed" "install Node.js 20 or newer"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || die "Node.js $(node --version) is too old" "install Node.js 20 or newer"
command -v go >/dev/null || die "Go is not installed (needed to build the Temporal CLI and the S3 server)" "install Go 1.23 or newer"
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || die "python3 is not installed" "install Python 3.10 or newer"
"$PYTHON" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || die "python3 3.10+ with venv is required" "install python3 and python3-venv"
ok "node $(node --version), $(go version | cut -d' ' -f3), $("$PYTHON" --version)"

say "npm packages"
lock_hash=$(sha256sum package-lock.json | cut -c1-16)
if [ "$(cat node_modules/.tempered-lock 2>/dev/null)" != "$lock_hash" ]; then
  # `npm install` rather than `npm ci`: npm 11 leaves other platforms' optional packages (turbo's binaries)
  # out of the lock file and `npm ci` then refuses it. The lock file still pins every version installed here.
  npm install --no-audit --no-fund --loglevel=error || die "npm install failed" "check network access to the npm registry, then run: npm install"
  echo "$lock_hash" > node_modules/.tempered-lock
  ok "installed ($(elapsed))"
else
  ok "up to date"
fi

go_tool() { # name module version
  local name=$1 module=$2 version=$3 stamp="$BIN/.$1-$3"
  if [ -x "$BIN/$name" ] && [ -f "$stamp" ]; then ok "$name $version cached in $BIN"; return; fi
  ok "building $name $version with go install (first time only, a few minutes)…"
  GOBIN="$BIN" GOFLAGS=-mod=mod go install "$module@$version" || die "go install $module@$version failed" "check access to the Go module proxy (GOPROXY), then rerun"
  rm -f "$BIN/.$name-"*; touch "$stamp"
  ok "$name $version built ($(elapsed))"
}
say "Temporal CLI and S3 server"
go_tool temporal github.com/temporalio/cli/cmd/temporal "$TEMPORAL_CLI_VERSION"
go_tool versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION"

say "Python ML runtime"
req=services/trainer/requirements.txt
venv="$TEMPERED_CACHE_DIR/venv/$(sha256sum "$req" | cut -c1-12)"
if [ ! -f "$venv/.complete" ]; then
  ok "creating $venv (torch, transformers, peft, trl; the first time downloads about 3 GB)…"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv" || die "could not create a venv" "install python3-venv"
  "$venv/bin/pip" install --quiet --upgrade pip >/dev/null
  "$venv/bin/pip" install --quiet --progress-bar on -r "$req" || die "pip install -r $req failed" "check access to PyPI, then rerun"
  touch "$venv/.complete"
  ok "ready ($(elapsed))"
else
  ok "$venv ready"
fi

say "Chromium (browser tests)"
if [ -x /usr/bin/chromium ]; then
  ok "$(/usr/bin/chromium --version 2>/dev/null | head -n1)"
else
  command -v apt-get >/dev/null || die "/usr/bin/chromium is missing and there is no apt-get to install it" "install Chromium so that /usr/bin/chromium exists"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  ok "installing Debian's chromium (first time only)…"
  apt_install() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
  apt_install || { $sudo apt-get update -q >/dev/null && apt_install; } || die "apt-get install chromium failed" "sudo apt-get update && sudo apt-get install chromium"
  ok "chromium installed ($(elapsed))"
fi
say "Bootstrap done in $(elapsed)"
