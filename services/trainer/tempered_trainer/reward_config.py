"""Config of the `reward` command (CONTRACT.md), validated on construction.

Named like TRL's own `RewardConfig`, which reward.py builds from it (imported there as `trl.RewardConfig`).
"""

import dataclasses
from typing import Optional

from .config import check_device, require
from .sft_config import check_model_source


@dataclasses.dataclass
class RewardConfig:
    preferences: str  # JSONL of {prompt, chosen, rejected}
    output_dir: str
    steps: int
    batch_size: int
    learning_rate: float
    seed: int
    # Exactly one of `base_model` (a model directory or model.tar, usually the sft model: the reward model starts
    # from what the policy knows) and `model` (a tiny GPT-2 from scratch, which needs `tokenizer`).
    base_model: Optional[str] = None
    model: Optional[dict] = None  # n_layer, n_head, n_embd, context_length
    tokenizer: Optional[str] = None
    device: str = "auto"

    def __post_init__(self):
        need = lambda ok, field, msg: require(ok, "reward", field, msg)  # noqa: E731
        check_model_source("reward", self.model, self.base_model, self.tokenizer)
        if self.base_model is not None:
            need(self.tokenizer is None, "tokenizer", "must be left out with 'base_model' (the model's own tokenizer is used)")
        for field in ("preferences", "output_dir"):
            need(bool(getattr(self, field)), field, "must be a non-empty path")
        need(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        need(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        need(0 < self.learning_rate <= 1, "learning_rate", f"must be in (0, 1], got {self.learning_rate}")
        need(self.seed >= 0, "seed", f"must be at least 0, got {self.seed}")
        check_device("reward", self.device)
