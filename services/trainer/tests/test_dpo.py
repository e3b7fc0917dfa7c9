import math

import torch

from conftest import finished, run_command
from tempered_trainer.model import load_pretrained


def test_dpo_changes_the_model(demo, exported, tmp_path):
    cfg = {"model": exported["model_tar"], "preferences": demo["preferences"], "output_dir": str(tmp_path / "out"),
           "steps": 6, "batch_size": 8, "learning_rate": 5e-4, "beta": 0.1, "seed": 0, "device": "cpu"}
    rc, events = run_command("dpo", cfg, tmp_path)
    assert rc == 0, events[-1]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 7)) and all(math.isfinite(e["loss"]) for e in steps)
    done = finished(events)
    assert done["step"] == 6 and math.isfinite(done["final_loss"]) and 0.0 <= done["reward_accuracy"] <= 1.0
    before, _ = load_pretrained(exported["model_dir"], torch.device("cpu"))
    after, _ = load_pretrained(done["model_tar"], torch.device("cpu"))
    a, b = before.state_dict(), after.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".trainer")]


def test_dpo_bad_preferences(demo, exported, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "reverse 1 2 3", "chosen": "3 2 1"}\n')
    rc, events = run_command("dpo", {"model": exported["model_tar"], "preferences": str(bad), "output_dir": str(tmp_path / "o"),
                                     "steps": 1, "batch_size": 1, "learning_rate": 1e-4, "beta": 0.1, "seed": 0}, tmp_path)
    assert rc == 2 and "rejected" in events[-1]["reason"]
