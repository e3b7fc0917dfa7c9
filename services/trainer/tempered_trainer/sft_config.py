"""Config of the `sft` command (CONTRACT.md), validated on construction so a bad value fails before any work."""

import dataclasses
from typing import Optional

from .config import check_device, require

MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "context_length")


@dataclasses.dataclass
class SFTConfig:
    train_shard: str
    tokenizer: str
    output_dir: str
    model: dict  # n_layer, n_head, n_embd, context_length
    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    checkpoint_every: int
    seed: int
    device: str = "auto"
    resume_from: Optional[str] = None
    log_every: int = 1

    def __post_init__(self):
        need = lambda ok, field, msg: require(ok, "sft", field, msg)  # noqa: E731
        for key in self.model:
            need(key in MODEL_FIELDS, f"model.{key}", f"is unknown (expected {', '.join(MODEL_FIELDS)})")
        for key in MODEL_FIELDS:
            v = self.model.get(key)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"model.{key}", f"must be a positive integer, got {v!r}")
        need(self.model["n_embd"] % self.model["n_head"] == 0, "model.n_embd", f"({self.model['n_embd']}) must be a multiple of model.n_head ({self.model['n_head']})")
        need(self.model["context_length"] >= 2, "model.context_length", "must be at least 2")
        need(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        need(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        need(0 < self.learning_rate <= 1, "learning_rate", f"must be in (0, 1], got {self.learning_rate}")
        need(0 <= self.warmup_steps, "warmup_steps", f"must be at least 0, got {self.warmup_steps}")
        need(self.weight_decay >= 0, "weight_decay", f"must be at least 0, got {self.weight_decay}")
        need(self.checkpoint_every >= 1, "checkpoint_every", f"must be at least 1, got {self.checkpoint_every}")
        need(self.seed >= 0, "seed", f"must be at least 0, got {self.seed}")
        need(self.log_every >= 1, "log_every", f"must be at least 1, got {self.log_every}")
        for field in ("train_shard", "tokenizer", "output_dir"):
            need(bool(getattr(self, field)), field, "must be a non-empty path")
        check_device("sft", self.device)
