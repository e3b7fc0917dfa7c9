"""`export`: an sft checkpoint -> a Hugging Face model directory plus a byte-reproducible model.tar."""

import dataclasses
import os

import torch

from .config import from_dict, require
from .events import emit
from .model import load_checkpoint_model, load_tokenizer, save_model_dir, write_model_tar


@dataclasses.dataclass
class ExportConfig:
    checkpoint: str
    tokenizer: str
    output_dir: str

    def __post_init__(self):
        for field in ("checkpoint", "tokenizer", "output_dir"):
            require(bool(getattr(self, field)), "export", field, "must be a non-empty path")


def run(raw: dict) -> None:
    cfg = from_dict(ExportConfig, raw, "export")
    model, ckpt = load_checkpoint_model(cfg.checkpoint, torch.device("cpu"))
    tokenizer = load_tokenizer(cfg.tokenizer)  # fails early on a tokenizer without <|endoftext|>
    if len(tokenizer) != ckpt["model_args"]["vocab_size"]:
        require(False, "export", "tokenizer", f"has {len(tokenizer)} tokens but the checkpoint's model expects {ckpt['model_args']['vocab_size']}")
    emit("started", command="export", device="cpu", step=int(ckpt["step"]), total_steps=int(ckpt["step"]), params=sum(p.numel() for p in model.parameters()))
    model_dir = save_model_dir(model, cfg.tokenizer, os.path.join(cfg.output_dir, "model"))
    model_tar = write_model_tar(model_dir, os.path.join(cfg.output_dir, "model.tar"))
    emit("finished", command="export", model_dir=model_dir, model_tar=model_tar)
