"""Config of the `sft` command (CONTRACT.md), validated on construction so a bad value fails before any work."""

import dataclasses
from typing import Optional

from .config import check_device, require

MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "context_length")


def check_model_source(command: str, model, base_model, tokenizer) -> None:
    """Exactly one of `model` (a tiny GPT-2 built from scratch, which needs `tokenizer`) and `base_model` (a model
    directory or model.tar); shared by every command that starts from either. Errors name the field."""
    need = lambda ok, field, msg: require(ok, command, field, msg)  # noqa: E731
    need((model is None) != (base_model is None), "model", "or 'base_model' must be given, exactly one of them")
    if model is None:
        need(bool(base_model), "base_model", "must be a non-empty path")
        return
    for key in model:
        need(key in MODEL_FIELDS, f"model.{key}", f"is unknown (expected {', '.join(MODEL_FIELDS)})")
    for key in MODEL_FIELDS:
        v = model.get(key)
        need(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"model.{key}", f"must be a positive integer, got {v!r}")
    need(model["n_embd"] % model["n_head"] == 0, "model.n_embd", f"({model['n_embd']}) must be a multiple of model.n_head ({model['n_head']})")
    need(model["context_length"] >= 2, "model.context_length", "must be at least 2")
    need(bool(tokenizer), "tokenizer", "is required with 'model' (a model built from scratch has no tokenizer of its own)")
LORA_FIELDS = ("r", "alpha", "dropout", "target_modules")


def check_lora(command: str, lora: dict) -> None:
    """The `lora` object: r (required), alpha (default r), dropout (default 0), target_modules (default by
    architecture: model.LORA_TARGETS)."""
    need = lambda ok, field, msg: require(ok, command, field, msg)  # noqa: E731
    for key in lora:
        need(key in LORA_FIELDS, f"lora.{key}", f"is unknown (expected {', '.join(LORA_FIELDS)})")
    r = lora.get("r")
    need(isinstance(r, int) and not isinstance(r, bool) and r >= 1, "lora.r", f"must be a positive integer, got {r!r}")
    alpha = lora.get("alpha")
    need(alpha is None or (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha > 0),
         "lora.alpha", f"must be a positive number, got {alpha!r}")
    dropout = lora.get("dropout", 0.0)
    need(isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout < 1,
         "lora.dropout", f"must be a number in [0, 1), got {dropout!r}")
    if "target_modules" in lora:
        targets = lora["target_modules"]
        need(isinstance(targets, list) and len(targets) > 0 and all(isinstance(t, str) and t for t in targets),
             "lora.target_modules", f"must be a non-empty list of module names, got {targets!r}")


@dataclasses.dataclass
class SFTConfig:
    train_shard: str
    output_dir: str
    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    checkpoint_every: int
    seed: int
    # Exactly one of `model` (a tiny GPT-2 built from scratch) and `base_model` (a model directory or model.tar).
    model: Optional[dict] = None  # n_layer, n_head, n_embd, context_length
    base_model: Optional[str] = None
    tokenizer: Optional[str] = None  # required with `model`; with `base_model` optional and must match its own
    lora: Optional[dict] = None  # r, alpha, dropout, target_modules: train a LoRA adapter instead of all weights
    device: str = "auto"
    resume_from: Optional[str] = None
    log_every: int = 1
    gradient_accumulation: int = 1  # micro-batches of batch_size per optimizer step
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, more time
    max_seq_length: Optional[int] = None  # records are cut to this many tokens (default: the model's context)

    def __post_init__(self):
        need = lambda ok, field, msg: require(ok, "sft", field, msg)  # noqa: E731
        check_model_source("sft", self.model, self.base_model, self.tokenizer)
        if self.lora is not None:
            check_lora("sft", self.lora)
        need(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        need(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        need(0 < self.learning_rate <= 1, "learning_rate", f"must be in (0, 1], got {self.learning_rate}")
        need(0 <= self.warmup_steps, "warmup_steps", f"must be at least 0, got {self.warmup_steps}")
        need(self.weight_decay >= 0, "weight_decay", f"must be at least 0, got {self.weight_decay}")
        need(self.checkpoint_every >= 1, "checkpoint_every", f"must be at least 1, got {self.checkpoint_every}")
        need(self.seed >= 0, "seed", f"must be at least 0, got {self.seed}")
        need(self.log_every >= 1, "log_every", f"must be at least 1, got {self.log_every}")
        need(self.gradient_accumulation >= 1, "gradient_accumulation", f"must be at least 1, got {self.gradient_accumulation}")
        need(self.max_seq_length is None or self.max_seq_length >= 2, "max_seq_length", f"must be at least 2, got {self.max_seq_length}")
        for field in ("train_shard", "output_dir"):
            need(bool(getattr(self, field)), field, "must be a non-empty path")
        check_device("sft", self.device)
