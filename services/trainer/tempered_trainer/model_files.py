"""Model directories and model.tar files: writing a model (or LoRA adapter) as a Hugging Face directory plus a
byte-reproducible tar, unpacking and loading either back, and the digest that names a base model's weights.

CONTRACT.md (`export`) fixes what these directories hold: exactly MODEL_FILES, or ADAPTER_FILES for an adapter.
"""

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile

import torch
from transformers import AutoModelForCausalLM

from .architecture import context_length
from .events import ConfigError, log
from .template import EOS, PLAIN, ChatFormat, tokenizer_config_fields
from .tokenizer import load_tokenizer

MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _keep_only(out_dir: str, names) -> None:
    """Remove what a library's save_pretrained wrote besides `names` (generation_config.json, a README model card)."""
    for name in os.listdir(out_dir):
        if name not in names:
            path = os.path.join(out_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def save_model_dir(model, tokenizer_path, out_dir: str, tokenizer_json: str = None, fmt: ChatFormat = PLAIN) -> str:
    """Write exactly MODEL_FILES into out_dir, loadable with `from_pretrained(out_dir)` and no network.

    The tokenizer comes from `tokenizer_path` (file or directory) or, when that is None, from `tokenizer_json`;
    tokenizer_config.json carries the chat format (template and end token), so the model is served with the
    template it was trained with.
    """
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    _keep_only(out_dir, MODEL_FILES)
    if tokenizer_path is None:
        with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(tokenizer_json)
    else:
        if os.path.isdir(tokenizer_path):
            tokenizer_path = os.path.join(tokenizer_path, "tokenizer.json")
        shutil.copyfile(tokenizer_path, os.path.join(out_dir, "tokenizer.json"))
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": EOS,
        "bos_token": EOS,
        "model_max_length": context_length(model.config),
        "clean_up_tokenization_spaces": False,
        **tokenizer_config_fields(fmt),
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tok_config, f, indent=2, sort_keys=True)
        f.write("\n")
    return out_dir


def save_adapter_dir(peft_model, out_dir: str) -> str:
    """Write exactly ADAPTER_FILES (PEFT's format): load with `PeftModel.from_pretrained(base, out_dir)`."""
    os.makedirs(out_dir, exist_ok=True)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    _keep_only(out_dir, ADAPTER_FILES)
    # PEFT records the base's path, here a staging directory that means nothing elsewhere and would make the
    # same adapter give different bytes; the base is whatever the run started from (CONTRACT.md).
    config_path = os.path.join(out_dir, "adapter_config.json")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    config["base_model_name_or_path"] = None
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    return out_dir


def write_model_tar(model_dir: str, tar_path: str) -> str:
    """An uncompressed tar of the model (or adapter) files with sorted names, zero mtimes and root ownership, so the same
    model always gives the same bytes (and digest). Written to a temp name, then renamed."""
    tmp = f"{tar_path}.tmp-{os.getpid()}"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(model_dir)):
            with open(os.path.join(model_dir, name), "rb") as f:
                data = f.read()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, tar_path)
    return tar_path


class unpacked_model:
    """A model directory: the given one, or a temporary extraction of a model.tar removed on exit."""

    def __init__(self, path: str):
        self.path, self.tmp = path, None

    def __enter__(self) -> str:
        if os.path.isdir(self.path):
            return self.path
        if not os.path.isfile(self.path):
            raise ConfigError(f"model not found: {self.path}")
        if not tarfile.is_tarfile(self.path):
            raise ConfigError(f"model {self.path} is neither a directory nor a tar file")
        self.tmp = tempfile.mkdtemp(prefix="tempered-model-")
        with tarfile.open(self.path) as tar:
            tar.extractall(self.tmp, filter="data")  # 'data' refuses absolute paths and links out of the folder
        return self.tmp

    def __exit__(self, *exc):
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def load_pretrained(path: str, device: torch.device):
    """(model, tokenizer) from a model directory or an uncompressed model.tar; the model is in eval mode."""
    with unpacked_model(path) as model_dir:
        missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not os.path.isfile(os.path.join(model_dir, f))]
        if missing:
            raise ConfigError(f"model {path} lacks {', '.join(missing)}")
        model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
        tokenizer = load_tokenizer(model_dir)
    log.info("loaded model from %s", path)
    return model.to(device).eval(), tokenizer


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_digest(model_dir: str) -> str:
    """sha256 of a model directory's model.safetensors: names the exact base weights a LoRA checkpoint needs."""
    return sha256_file(os.path.join(model_dir, "model.safetensors"))


def load_base_weights(base_model: str, expected_digest: str = None):
    """(model on CPU, tokenizer, weights digest) of a base model directory or model.tar; with `expected_digest`, a
    different base is a bad-input error (an adapter only fits the weights it was trained on)."""
    with unpacked_model(base_model) as src:
        digest = weights_digest(src)
        if expected_digest is not None and digest != expected_digest:
            raise ConfigError(f"field 'base_model' ({base_model}) has weights {digest[:12]}, but the checkpoint's adapter "
                              f"was trained on {expected_digest[:12]}; pass the base the run started from")
        model, tokenizer = load_pretrained(src, torch.device("cpu"))
    return model, tokenizer, digest
