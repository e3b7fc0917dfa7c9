"""Config of the `rl` command (CONTRACT.md), validated on construction.

rl.py builds TRL's `GRPOConfig` from it (imported there as `trl.GRPOConfig`).
"""

import dataclasses

from .config import check_device, require


@dataclasses.dataclass
class RLConfig:
    policy: str  # model directory or model.tar: the starting policy, also the frozen KL reference
    reward_model: str  # directory or model.tar written by `reward` (a sequence classifier with one output)
    prompts: str  # JSONL of {prompt, ...}
    output_dir: str
    steps: int
    batch_size: int  # prompts per step; each is sampled num_generations times
    num_generations: int
    max_new_tokens: int
    learning_rate: float
    beta: float  # weight of the KL penalty to the reference; 0 turns it (and the reference model) off
    seed: int
    temperature: float = 1.0  # sampling temperature of the rollouts
    device: str = "auto"

    def __post_init__(self):
        need = lambda ok, field, msg: require(ok, "rl", field, msg)  # noqa: E731
        for field in ("policy", "reward_model", "prompts", "output_dir"):
            need(bool(getattr(self, field)), field, "must be a non-empty path")
        need(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        need(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        # GRPO's advantage is a reward relative to the other samples of the same prompt: one sample has none.
        need(self.num_generations >= 2, "num_generations", f"must be at least 2, got {self.num_generations}")
        need(self.max_new_tokens >= 1, "max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        need(0 < self.learning_rate <= 1, "learning_rate", f"must be in (0, 1], got {self.learning_rate}")
        need(self.beta >= 0, "beta", f"must be at least 0, got {self.beta}")
        need(self.temperature > 0, "temperature", f"must be positive, got {self.temperature}")
        need(self.seed >= 0, "seed", f"must be at least 0, got {self.seed}")
        check_device("rl", self.device)
