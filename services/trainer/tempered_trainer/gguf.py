"""`gguf`: a model -> GGUF files for llama.cpp (f16 and quantized types), each loaded back by llama.cpp and checked.

The f16 file is written by llama.cpp's own maintained converter, convert_hf_to_gguf.py, as the llama-cpp-python
sdist vendors it (infra/bootstrap.sh keeps it, with its `conversion` package and gguf-py, in the cache); the
quantized types are made from the f16 file by llama.cpp's quantizer (`llama_cpp.llama_model_quantize`, what
`llama-quantize` runs). A LoRA adapter is merged into its base first (peft's merge_and_unload).

The GGUF says what the platform's chat format says: the model's chat template (the plain template written as
Jinja for a model without one) and no BOS added, since templates here say everything the model sees
(template.py). Every file is then loaded with `llama_cpp.Llama`: the prompt must encode to exactly the ids the
model's own tokenizer gives, and it answers the check prompt greedily through the GGUF's template.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

from .config import from_dict, require
from .events import ConfigError, emit, log

TYPES = ("f16", "q8_0", "q4_k_m")
# llama.cpp's llama_ftype for each quantized type (llama.h: LLAMA_FTYPE_MOSTLY_Q8_0, LLAMA_FTYPE_MOSTLY_Q4_K_M).
FTYPES = {"q8_0": 7, "q4_k_m": 15}

# The plain template (template.py) in Jinja: every system or user turn followed by a newline, every assistant turn
# by <|endoftext|>; the generation prompt adds nothing.
PLAIN_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}{{ message['content'] }}<|endoftext|>"
    "{% else %}{{ message['content'] + '\n' }}{% endif %}{% endfor %}"
)


def default_converter() -> Optional[str]:
    """TEMPERED_GGUF_CONVERTER, else where infra/bootstrap.sh keeps it (the newest llama-cpp-python version there)."""
    if os.environ.get("TEMPERED_GGUF_CONVERTER"):
        return os.environ["TEMPERED_GGUF_CONVERTER"]
    cache = os.environ.get("TEMPERED_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tempered")
    root = os.path.join(cache, "llama-cpp")
    found = sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "convert_hf_to_gguf.py"))) if os.path.isdir(root) else []
    return os.path.join(root, found[-1], "convert_hf_to_gguf.py") if found else None


@dataclasses.dataclass
class GGUFConfig:
    output_dir: str
    model: Optional[str] = None  # a model directory or model.tar (an exported or merged model)
    adapter: Optional[str] = None  # or a LoRA adapter (directory or adapter.tar) over `base_model`
    base_model: Optional[str] = None
    types: List[str] = dataclasses.field(default_factory=lambda: list(TYPES))
    converter: Optional[str] = None  # convert_hf_to_gguf.py; default: default_converter()
    check_prompt: str = "Hello"  # answered greedily by every file through its chat template
    max_new_tokens: int = 16
    threads: Optional[int] = None  # llama.cpp's threads (default: its own choice)

    def __post_init__(self):
        need = lambda ok, field, msg: require(ok, "gguf", field, msg)  # noqa: E731
        need(bool(self.output_dir), "output_dir", "must be a non-empty path")
        need((self.model is None) != (self.adapter is None), "model", "or 'adapter' (with 'base_model') must be given, exactly one of them")
        need(self.adapter is None or bool(self.base_model), "base_model", "is required with 'adapter' (the model the adapter was trained on)")
        need(self.model is None or self.base_model is None, "base_model", "goes with 'adapter' only; 'model' is a whole model")
        need(bool(self.types), "types", f"must list at least one of {', '.join(TYPES)}")
        for i, t in enumerate(self.types):
            need(t in TYPES, f"types[{i}]", f"must be one of {', '.join(TYPES)}, got {t!r}")
        need(len(set(self.types)) == len(self.types), "types", "must not repeat a type")
        need(bool(self.check_prompt), "check_prompt", "must be a non-empty string")
        need(self.max_new_tokens >= 1, "max_new_tokens", "must be a positive integer")
        need(self.threads is None or self.threads >= 1, "threads", "must be a positive integer")


@contextlib.contextmanager
def stdout_fd_to_stderr():
    """llama.cpp's C code may print; stdout (fd 1) carries events only, so it goes to stderr meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _param_count(safetensors_path: str) -> int:
    from safetensors import safe_open

    with safe_open(safetensors_path, framework="pt") as f:
        total = 0
        for name in f.keys():
            n = 1
            for d in f.get_slice(name).get_shape():
                n *= d
            total += n
    return total


def _merged_model(cfg: GGUFConfig, into: str) -> str:
    """The adapter merged into its base, saved as a model directory (config, weights, tokenizer, chat format)."""
    import torch
    from peft import PeftModel

    from .model_files import load_base_weights, save_model_dir, unpacked_model
    from .template import read_chat_format

    base, _, _ = load_base_weights(cfg.base_model)
    with unpacked_model(cfg.adapter) as adapter_dir, unpacked_model(cfg.base_model) as base_dir:
        if not os.path.isfile(os.path.join(adapter_dir, "adapter_config.json")):
            raise ConfigError(f"gguf config: field 'adapter' ({cfg.adapter}) is not a LoRA adapter (no adapter_config.json)")
        merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
        save_model_dir(merged.to(torch.float32), base_dir, into, fmt=read_chat_format(base_dir))
    return into


def _stage(src: str, into: str):
    """A copy of the model directory whose tokenizer_config.json says what the GGUF must: the chat template (the
    plain one when the model has none) and no BOS or EOS added by the tokenizer. Returns the model's config.json
    and its own chat format."""
    from .template import read_chat_format

    os.makedirs(into)
    for name in os.listdir(src):
        if os.path.isfile(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), os.path.join(into, name))
    for needed in ("config.json", "model.safetensors", "tokenizer.json"):
        if not os.path.isfile(os.path.join(into, needed)):
            raise ConfigError(f"gguf config: field 'model' lacks {needed}: not a Hugging Face model directory")
    fmt = read_chat_format(src)
    path = os.path.join(into, "tokenizer_config.json")
    tok_config = json.load(open(path, encoding="utf-8")) if os.path.isfile(path) else {}
    tok_config.update(chat_template=fmt.template or PLAIN_TEMPLATE, eos_token=fmt.end, add_bos_token=False, add_eos_token=False)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tok_config, f, indent=2, sort_keys=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(into, "chat_template.jinja"))  # the template now lives in tokenizer_config.json
    with open(os.path.join(into, "config.json"), encoding="utf-8") as f:
        model_config = json.load(f)
    if model_config.get("model_type") == "gpt2" and "n_ctx" not in model_config:
        # The converter reads GPT-2's context as `n_ctx`, which older configs wrote beside `n_positions` (the same
        # number) and transformers 5 no longer does.
        model_config["n_ctx"] = model_config["n_positions"]
        with open(os.path.join(into, "config.json"), "w", encoding="utf-8") as f:
            json.dump(model_config, f, indent=2, sort_keys=True)
    return model_config, fmt


def _convert(converter: str, model_dir: str, out: str) -> None:
    """convert_hf_to_gguf.py --outtype f16, in a process of its own (its memory goes with it)."""
    cmd = [sys.executable, "-m", "tempered_trainer.gguf_converter", converter, model_dir, "--outfile", out, "--outtype", "f16"]
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (pkg_root, os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=err, text=True, env=env)
        started = time.monotonic()
        while True:
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:  # a long conversion still says it works (CONTRACT.md, `progress`)
                emit("progress", what="convert", done=int(time.monotonic() - started), total=None)
        err.seek(0)
        output = err.read()
    sys.stderr.write(output[-20000:])
    if proc.returncode != 0:
        lines = [line for line in output.splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        if "not supported" in last or "NotImplementedError" in last:
            raise ConfigError(f"gguf config: field 'model': llama.cpp's converter cannot convert this model: {last}")
        raise RuntimeError(f"convert_hf_to_gguf.py failed: {last}")


def _quantize(f16: str, out: str, kind: str, threads: Optional[int]) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[kind]
    params.nthread = threads or 0
    with stdout_fd_to_stderr():
        rc = llama_cpp.llama_model_quantize(f16.encode(), out.encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize to {kind} failed (code {rc})")


def _check(path: str, cfg: GGUFConfig, hf_tokenizer, fmt) -> dict:
    """Load a GGUF file with llama.cpp, compare its tokenization of the check prompt with the model's own
    tokenizer's, and answer the prompt greedily through the GGUF's chat template."""
    import llama_cpp

    from .template import encode_prompt, prompt_text

    messages = [{"role": "user", "content": cfg.check_prompt}]
    with stdout_fd_to_stderr():
        llm = llama_cpp.Llama(model_path=path, n_ctx=0, n_threads=cfg.threads, verbose=False, chat_format="chat_template.default", seed=0)
        ids = llm.tokenize(prompt_text(fmt, messages).encode("utf-8"), add_bos=True, special=True)
        expected = encode_prompt(hf_tokenizer, fmt, cfg.check_prompt)
        if list(ids) != list(expected):
            raise ConfigError(f"gguf: llama.cpp encodes the check prompt to {list(ids)[:16]}…, the model's tokenizer to "
                              f"{list(expected)[:16]}…; this GGUF would not be the same model")
        t0 = time.perf_counter()
        out = llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=cfg.max_new_tokens)
        seconds = time.perf_counter() - t0
    answer = out["choices"][0]["message"]["content"] or ""
    return {"answer": answer, "completion_tokens": out["usage"]["completion_tokens"],
            "tokens_per_sec": out["usage"]["completion_tokens"] / seconds if seconds > 0 else None}


def run(raw: dict) -> None:
    cfg = from_dict(GGUFConfig, raw, "gguf")
    converter = cfg.converter or default_converter()
    if not converter or not os.path.isfile(converter):
        raise ConfigError(f"gguf config: field 'converter': llama.cpp's convert_hf_to_gguf.py was not found ({converter or 'none in the cache'}); run infra/bootstrap.sh")
    from .model_files import sha256_file, unpacked_model
    from .tokenizer import load_tokenizer

    os.makedirs(cfg.output_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="tempered-gguf-", dir=cfg.output_dir)
    try:
        t0 = time.perf_counter()
        steps = ["merge"] if cfg.adapter else []
        steps += ["convert"] + [f"quantize {t}" for t in cfg.types if t != "f16"] + ["check"]
        done = 0

        def step(phase: str, since: float) -> float:
            nonlocal done
            done += 1
            now = time.perf_counter()
            emit("step", step=done, total_steps=len(steps), phase=phase, seconds=now - since)
            return now

        source = _merged_model(cfg, os.path.join(work, "merged")) if cfg.adapter else cfg.model
        with unpacked_model(source) as model_dir:
            staged = os.path.join(work, "staged")
            model_config, fmt = _stage(model_dir, staged)
        architecture = (model_config.get("architectures") or ["?"])[0]
        hf_tokenizer = load_tokenizer(staged)
        emit("started", command="gguf", device="cpu", step=0, total_steps=len(steps), architecture=architecture,
             params=_param_count(os.path.join(staged, "model.safetensors")))
        if cfg.adapter:
            t0 = step("merge", t0)
        f16 = os.path.join(work, "model-f16.gguf")
        _convert(converter, staged, f16)
        t0 = step("convert", t0)
        made = {"f16": f16}
        for kind in cfg.types:
            if kind != "f16":
                made[kind] = os.path.join(work, f"model-{kind}.gguf")
                _quantize(f16, made[kind], kind, cfg.threads)
                t0 = step(f"quantize {kind}", t0)
        files = []
        for kind in cfg.types:
            final = os.path.join(cfg.output_dir, f"model-{kind}.gguf")
            check = _check(made[kind], cfg, hf_tokenizer, fmt)
            os.replace(made[kind], final)
            files.append({"type": kind, "path": final, "bytes": os.path.getsize(final), "sha256": sha256_file(final), "check": check})
            log.info("%s: %d bytes, answered %r", kind, files[-1]["bytes"], check["answer"])
        step("check", t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit("finished", command="gguf", architecture=architecture, chat_template=fmt.template is not None, files=files,
         check_prompt=cfg.check_prompt)
