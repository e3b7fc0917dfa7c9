"""`export`: an sft checkpoint -> a Hugging Face model directory plus a byte-reproducible model.tar.

A LoRA checkpoint gives two deliverables: the adapter alone (`adapter/` + `adapter.tar`, PEFT's format, which
needs the base it was trained on) and the base with the adapter merged in (`model/` + `model.tar`, a plain model
like any other export).
"""

import dataclasses
import os
import shutil
from typing import Optional

import torch

from .architecture import count_params
from .checkpoint import checkpoint_format, checkpoint_tokenizer, load_checkpoint_model
from .config import from_dict, require
from .classifier import is_classifier
from .events import emit
from .model_files import save_adapter_dir, save_model_dir, write_model_tar


@dataclasses.dataclass
class ExportConfig:
    checkpoint: str
    output_dir: str
    tokenizer: Optional[str] = None  # defaults to the tokenizer the checkpoint carries (sft stores it)
    base_model: Optional[str] = None  # required for a LoRA checkpoint over a base model: the base is not in it

    def __post_init__(self):
        for field in ("checkpoint", "output_dir"):
            require(bool(getattr(self, field)), "export", field, "must be a non-empty path")


def run(raw: dict) -> None:
    cfg = from_dict(ExportConfig, raw, "export")
    if is_classifier(cfg.checkpoint):  # classifier.py: its archive is already the deliverable
        os.makedirs(cfg.output_dir, exist_ok=True)
        model_tar = os.path.join(cfg.output_dir, "model.tar")
        shutil.copyfile(cfg.checkpoint, model_tar)
        emit("started", command="export", device="cpu", step=1, total_steps=1, params=None)
        emit("finished", command="export", model_tar=model_tar)
        return
    model, ckpt = load_checkpoint_model(cfg.checkpoint, torch.device("cpu"), merge=False, base_model=cfg.base_model)
    tokenizer = checkpoint_tokenizer(ckpt, cfg.tokenizer, cfg.checkpoint)  # fails early on a tokenizer without <|endoftext|>
    expected = ckpt["model_args"]["vocab_size"]
    # A from-scratch model's vocabulary is exactly its tokenizer's; a base model's may be padded beyond it.
    fits = len(tokenizer) <= expected if "config" in ckpt["model_args"] else len(tokenizer) == expected
    require(fits, "export", "tokenizer", f"has {len(tokenizer)} tokens but the checkpoint's model expects {expected}")
    emit("started", command="export", device="cpu", step=int(ckpt["step"]), total_steps=int(ckpt["step"]), params=count_params(model))
    outputs = {}
    if ckpt.get("lora"):
        outputs["adapter_dir"] = save_adapter_dir(model, os.path.join(cfg.output_dir, "adapter"))
        outputs["adapter_tar"] = write_model_tar(outputs["adapter_dir"], os.path.join(cfg.output_dir, "adapter.tar"))
        model = model.merge_and_unload()
    tokenizer_json = None if cfg.tokenizer else ckpt["tokenizer_json"]
    model_dir = save_model_dir(model, cfg.tokenizer, os.path.join(cfg.output_dir, "model"), tokenizer_json=tokenizer_json,
                               fmt=checkpoint_format(ckpt))
    model_tar = write_model_tar(model_dir, os.path.join(cfg.output_dir, "model.tar"))
    emit("finished", command="export", model_dir=model_dir, model_tar=model_tar, **outputs)
