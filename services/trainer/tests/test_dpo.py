"""`dpo` (TRL DPOTrainer) on the demo's 64 preference pairs, from the shared sft model: the figures it reports are
checked against log-probabilities computed here, and the tuned model prefers the chosen answers more than the
model it started from did."""

import math

import pytest
import torch

from conftest import finished, run_command
from tempered_trainer.architecture import context_length
from tempered_trainer.dpo import read_preferences
from tempered_trainer.model_files import load_pretrained
from tempered_trainer.tokenizer import chat_format_of

STEPS, BATCH = 16, 8  # two passes over the 64 pairs


@pytest.fixture(scope="module")
def dpo_run(demo, exported, tmp_path_factory):
    d = tmp_path_factory.mktemp("dpo")
    cfg = {"model": exported["model_tar"], "preferences": demo["preferences"], "output_dir": str(d / "out"),
           "steps": STEPS, "batch_size": BATCH, "learning_rate": 1e-3, "beta": 0.1, "seed": 0, "device": "cpu"}
    rc, events = run_command("dpo", cfg, d)
    assert rc == 0, events[-1]
    return {"dir": d, "events": events, "finished": finished(events)}


def completion_logps(model_path: str, preferences: str) -> torch.Tensor:
    """[pairs, 2]: log p(chosen | prompt) and log p(rejected | prompt) under a model, summed over the answer's
    tokens (its end token included), with prompt and answers rendered as the dpo command renders them."""
    model, tok = load_pretrained(model_path, torch.device("cpu"))
    out = []
    with torch.no_grad():
        for row in read_preferences(preferences, chat_format_of(tok)):
            prompt = tok.encode(row["prompt"], add_special_tokens=False)
            pair = []
            for answer in (row["chosen"], row["rejected"]):
                ids = tok.encode(row["prompt"] + answer, add_special_tokens=False)
                # The prompt's tokens are a prefix and nothing is truncated, so these are the log-probs DPO trains on.
                assert ids[: len(prompt)] == prompt and len(ids) <= context_length(model.config)
                logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
                positions = torch.arange(len(prompt) - 1, len(ids) - 1)  # logits at i predict token i + 1
                pair.append(float(logp[positions, torch.tensor(ids[len(prompt):])].sum()))
            out.append(pair)
    return torch.tensor(out, dtype=torch.float64)


@pytest.fixture(scope="module")
def logps(demo, exported, dpo_run):
    """Log-probs of every pair under the starting model (DPO's frozen reference) and under the tuned one."""
    return {"reference": completion_logps(exported["model_dir"], demo["preferences"]),
            "tuned": completion_logps(dpo_run["finished"]["model_tar"], demo["preferences"])}


def test_dpo_changes_the_model(exported, dpo_run, tmp_path):
    events, done = dpo_run["events"], dpo_run["finished"]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, STEPS + 1)) and all(math.isfinite(e["loss"]) for e in steps)
    # Step 1 scores its batch before any update, when the policy is still the reference: every implicit reward is
    # exactly 0, so no pair is ranked right yet and the loss is -log sigmoid(0).
    assert steps[0]["reward_accuracy"] == 0.0 and steps[0]["reward_margin"] == 0.0
    assert math.isclose(steps[0]["loss"], math.log(2), rel_tol=1e-6)
    # A step's accuracy is a share of its batch of BATCH pairs.
    assert all(math.isclose(e["reward_accuracy"] * BATCH, round(e["reward_accuracy"] * BATCH), abs_tol=1e-6) for e in steps)
    assert done["step"] == STEPS and math.isfinite(done["final_loss"]) and done["final_loss"] == steps[-1]["loss"]
    before, _ = load_pretrained(exported["model_dir"], torch.device("cpu"))
    after, _ = load_pretrained(done["model_tar"], torch.device("cpu"))
    a, b = before.state_dict(), after.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert not [p for p in (dpo_run["dir"] / "out").iterdir() if p.name.startswith(".trainer")]


def test_dpo_reward_accuracy_is_the_share_of_pairs_ranked_right(dpo_run, logps):
    # DPO's implicit reward of an answer is beta * (log pi(answer) - log pi_ref(answer)); a pair is ranked right
    # when chosen's reward is the higher one, i.e. when training widened its chosen - rejected margin.
    ref, tuned = logps["reference"], logps["tuned"]
    gain = (tuned[:, 0] - ref[:, 0]) - (tuned[:, 1] - ref[:, 1])
    right = int((gain > 0).sum())
    # TRL scores padded batches, here one pair at a time: float noise could flip a pair whose gain is ~0.
    close_calls = int((gain.abs() < 1e-4).sum())
    reported = dpo_run["finished"]["reward_accuracy"] * len(gain)  # two evaluation batches of 32 pairs: the exact share
    assert abs(reported - right) <= close_calls + 1e-6, (reported, right, close_calls)


def test_dpo_moves_the_model_toward_the_chosen_answers(dpo_run, logps):
    # The margin log p(chosen) - log p(rejected), not log p(chosen) alone: DPO typically lowers both answers'
    # log-probabilities (it does here) and the rejected one's more.
    ref, tuned = logps["reference"], logps["tuned"]
    margin_before, margin_after = ref[:, 0] - ref[:, 1], tuned[:, 0] - tuned[:, 1]
    # The shared sft model is barely trained (either answer has log-probability ~-13), so 16 steps separate the
    # pairs only partly: measured, the mean margin goes from -0.04 to +0.13 and widens for 41 of the 64 pairs.
    # The thresholds leave room for another torch build's float noise, not for a DPO that does nothing.
    assert float(margin_after.mean()) > float(margin_before.mean()) + 0.08, (float(margin_before.mean()), float(margin_after.mean()))
    widened = float((margin_after > margin_before).double().mean())
    assert widened > 0.55, widened
    assert dpo_run["finished"]["reward_accuracy"] > 0.55


def test_dpo_bad_preferences(demo, exported, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "reverse 1 2 3", "chosen": "3 2 1"}\n')
    rc, events = run_command("dpo", {"model": exported["model_tar"], "preferences": str(bad), "output_dir": str(tmp_path / "o"),
                                     "steps": 1, "batch_size": 1, "learning_rate": 1e-4, "beta": 0.1, "seed": 0}, tmp_path)
    assert rc == 2 and "rejected" in events[-1]["reason"]
