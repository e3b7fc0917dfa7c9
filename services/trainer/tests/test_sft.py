import math
import os

import torch

from conftest import finished, run_command, sft_config


def test_sft_learns_and_checkpoints(sft_run):
    events, done = sft_run["events"], sft_run["finished"]
    started = events[0]
    assert started["event"] == "started" and started["step"] == 0 and started["total_steps"] == 60 and started["params"] > 0
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 61))
    assert all(math.isfinite(e["loss"]) and e["lr"] > 0 and e["tokens_per_sec"] > 0 for e in steps)
    assert done["final_loss"] < done["initial_loss"] * 0.6
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [0, 30, 60]
    assert [os.path.basename(p) for p in done["checkpoints"]] == ["step-00000000.pt", "step-00000030.pt", "step-00000060.pt"]
    assert not [f for f in os.listdir(os.path.dirname(done["checkpoints"][0])) if ".tmp" in f]

    first = torch.load(done["checkpoints"][0], weights_only=False)
    last = torch.load(done["checkpoints"][-1], weights_only=False)
    assert set(last) >= {"model", "optimizer", "scheduler", "step", "rng", "data_position", "model_args", "config"}
    assert set(last["rng"]) >= {"python", "torch", "cuda"} and set(last["data_position"]) == {"epoch", "index"}
    assert first["step"] == 0 and last["step"] == 60 and last["config"]["steps"] == 60
    changed = [k for k in first["model"] if not torch.equal(first["model"][k], last["model"][k])]
    assert len(changed) >= len(first["model"]) // 2


def test_resume_is_exact(demo, tmp_path):
    # 20 steps straight vs 10 steps, then resume_from the step-10 checkpoint for the other 10.
    straight_cfg = sft_config(demo, tmp_path / "a", steps=20, checkpoint_every=10, warmup_steps=3)
    rc, straight = run_command("sft", straight_cfg, tmp_path)
    assert rc == 0
    half = os.path.join(tmp_path, "a", "checkpoints", "step-00000010.pt")
    rc, resumed = run_command("sft", {**straight_cfg, "output_dir": str(tmp_path / "b"), "resume_from": half}, tmp_path)
    assert rc == 0, resumed[-1]
    assert resumed[0]["event"] == "started" and resumed[0]["step"] == 10
    losses = lambda evs: {e["step"]: e["loss"] for e in evs if e["event"] == "step"}  # noqa: E731
    assert list(losses(resumed)) == list(range(11, 21))
    assert all(losses(resumed)[s] == losses(straight)[s] for s in range(11, 21))
    a = torch.load(finished(straight)["checkpoints"][-1], weights_only=False)
    b = torch.load(finished(resumed)["checkpoints"][-1], weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["data_position"] == b["data_position"]
    assert finished(resumed)["initial_loss"] == finished(straight)["initial_loss"]


def test_bad_config_names_the_field(demo, tmp_path):
    rc, events = run_command("sft", sft_config(demo, tmp_path, steps=0), tmp_path)
    assert rc == 2 and events[-1] == {**events[-1], "event": "error", "retryable": False} and "'steps'" in events[-1]["reason"]
    rc, events = run_command("sft", sft_config(demo, tmp_path, model={**sft_config(demo, tmp_path)["model"], "n_embd": 33}), tmp_path)
    assert rc == 2 and "model.n_embd" in events[-1]["reason"]
    rc, events = run_command("sft", sft_config(demo, tmp_path, learning_rate="fast"), tmp_path)
    assert rc == 2 and "'learning_rate'" in events[-1]["reason"]
