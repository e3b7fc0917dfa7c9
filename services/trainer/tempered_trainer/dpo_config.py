"""Config of the `dpo` command (CONTRACT.md), validated on construction.

Named like TRL's own `DPOConfig`, which dpo.py builds from it (imported there as `trl.DPOConfig`).
"""

import dataclasses

from .config import check_device, require


@dataclasses.dataclass
class DPOConfig:
    model: str  # model directory or model.tar
    preferences: str  # JSONL of {prompt, chosen, rejected}
    output_dir: str
    steps: int
    batch_size: int
    learning_rate: float
    beta: float
    seed: int
    device: str = "auto"

    def __post_init__(self):
        need = lambda ok, field, msg: require(ok, "dpo", field, msg)  # noqa: E731
        for field in ("model", "preferences", "output_dir"):
            need(bool(getattr(self, field)), field, "must be a non-empty path")
        need(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        need(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        need(0 < self.learning_rate <= 1, "learning_rate", f"must be in (0, 1], got {self.learning_rate}")
        need(self.beta > 0, "beta", f"must be positive, got {self.beta}")
        need(self.seed >= 0, "seed", f"must be at least 0, got {self.seed}")
        check_device("dpo", self.device)
