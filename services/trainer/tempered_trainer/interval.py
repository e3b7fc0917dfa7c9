"""`interval`: bootstrap 95% intervals (stats.py) of per-example scores computed elsewhere, so that a figure the
TypeScript side scores (the safety suite's unsafe answers, by the gateway's own filter in packages/text) gets its
interval from the same seeded bootstrap as every other test figure. Needs numpy only: no torch import.
"""

import dataclasses
from typing import List

from .config import from_dict, require
from .events import emit
from .stats import bootstrap


@dataclasses.dataclass
class IntervalConfig:
    names: List[str]
    # one list per name: a score per example (1/0 for yes/no gives a rate)
    scores: List[List[float]]

    def __post_init__(self):
        require(len(self.names) > 0 and len(set(self.names)) == len(self.names), "interval", "names", "must be a non-empty list of different names")
        require(len(self.scores) == len(self.names), "interval", "scores", f"must be one list per name ({len(self.names)}), got {len(self.scores)}")


def run(raw: dict) -> None:
    cfg = from_dict(IntervalConfig, raw, "interval")
    emit("finished", command="interval", intervals={name: bootstrap(values) for name, values in zip(cfg.names, cfg.scores)})
