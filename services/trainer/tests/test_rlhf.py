"""reward (TRL RewardTrainer), rl (TRL GRPOTrainer against the reward model, KL to the start) and compare."""

import json
import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from conftest import TINY_MODEL, finished, run_command, sft_config
from tempered_trainer.demo_task import exact_reversal
from tempered_trainer.model_files import load_pretrained


def reward_config(demo, out, **overrides) -> dict:
    cfg = {"preferences": demo["preferences"], "output_dir": str(out), "steps": 40, "batch_size": 16, "learning_rate": 1e-2,
           "seed": 0, "device": "cpu"}
    return {**cfg, **overrides}


@pytest.fixture(scope="session")
def reward_run(demo, exported, tmp_path_factory):
    """A reward model on top of the sft model, shared by the reward and rl tests."""
    d = tmp_path_factory.mktemp("reward")
    rc, events = run_command("reward", reward_config(demo, d / "out", base_model=exported["model_tar"]), d)
    assert rc == 0, events[-1]
    return {"events": events, "finished": finished(events)}


def test_reward_model_learns_the_pairs(reward_run, exported):
    events, done = reward_run["events"], reward_run["finished"]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 41))
    assert all(math.isfinite(e["loss"]) and 0.0 <= e["accuracy"] <= 1.0 for e in steps)
    # scored on all training pairs before and after: the Bradley-Terry loss falls, the ranking improves
    assert done["pairs"] == 64 and done["reward_loss"] < done["initial_reward_loss"] - 0.03
    assert done["reward_accuracy"] >= done["initial_reward_accuracy"] + 0.1

    rm = AutoModelForSequenceClassification.from_pretrained(done["model_dir"])
    assert rm.config.num_labels == 1 and rm.config.architectures == ["GPT2ForSequenceClassification"]
    sft, _ = load_pretrained(exported["model_dir"], torch.device("cpu"))
    before, after = sft.state_dict(), rm.state_dict()
    assert not torch.equal(before["transformer.h.0.attn.c_attn.weight"], after["transformer.h.0.attn.c_attn.weight"])


def test_reward_model_from_a_tiny_config(demo, tmp_path):
    rc, events = run_command("reward", reward_config(demo, tmp_path / "out", steps=3, model=dict(TINY_MODEL), tokenizer=demo["tokenizer"]), tmp_path)
    assert rc == 0, events[-1]
    rm = AutoModelForSequenceClassification.from_pretrained(finished(events)["model_dir"])
    assert rm.config.num_labels == 1 and rm.config.n_embd == TINY_MODEL["n_embd"]
    rc, events = run_command("reward", reward_config(demo, tmp_path / "o2", model=dict(TINY_MODEL)), tmp_path)
    assert rc == 2 and "'tokenizer'" in events[-1]["reason"]


def rl_config(demo, exported, reward_run, out, **overrides) -> dict:
    cfg = {"policy": exported["model_tar"], "reward_model": reward_run["finished"]["model_tar"], "prompts": demo["preferences"],
           "output_dir": str(out), "steps": 4, "batch_size": 4, "num_generations": 4, "max_new_tokens": 8,
           "learning_rate": 1e-3, "beta": 0.1, "seed": 0, "device": "cpu"}
    return {**cfg, **overrides}


def test_rl_steps_against_the_reward_model(demo, exported, reward_run, tmp_path):
    rc, events = run_command("rl", rl_config(demo, exported, reward_run, tmp_path / "out"), tmp_path)
    assert rc == 0, events[-1]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    assert all(math.isfinite(e["loss"]) and math.isfinite(e["reward"]) and e["tokens_per_sec"] > 0 for e in steps)
    # KL to the reference is exactly 0 before the first update, then positive once the policy has moved
    assert steps[0]["kl"] == 0.0 and steps[-1]["kl"] > 0.0
    done = finished(events)
    assert done["step"] == 4 and done["initial_reward_mean"] == steps[0]["reward"] and done["kl"] == steps[-1]["kl"]
    before, _ = load_pretrained(exported["model_dir"], torch.device("cpu"))
    after, _ = load_pretrained(done["model_tar"], torch.device("cpu"))
    a, b = before.state_dict(), after.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".trainer")]


def test_rl_config_errors(demo, exported, reward_run, tmp_path):
    cases = [
        (rl_config(demo, exported, reward_run, tmp_path, reward_model=exported["model_tar"]), "not a reward model"),
        (rl_config(demo, exported, reward_run, tmp_path, num_generations=1), "'num_generations'"),
        (rl_config(demo, exported, reward_run, tmp_path, max_new_tokens=64), "'max_new_tokens'"),
        (rl_config(demo, exported, reward_run, tmp_path, beta=-1), "'beta'"),
    ]
    for cfg, needle in cases:
        rc, events = run_command("rl", cfg, tmp_path)
        assert rc == 2 and events[-1]["retryable"] is False and needle in events[-1]["reason"], (needle, events[-1])


def test_exact_reversal_rule():
    assert exact_reversal("reverse 3 9 1 4") == "4 1 9 3" and exact_reversal("reverse 7 7 0") == "0 7 7"


@pytest.fixture(scope="session")
def heldout_prompts(demo, tmp_path_factory):
    path = tmp_path_factory.mktemp("compare") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": r["prompt"], "reference": r["response"]}) + "\n" for r in demo["heldout"]))
    return str(path)


def test_compare_a_model_with_itself_is_all_ties(exported, heldout_prompts, tmp_path):
    cfg = {"model_a": exported["model_tar"], "model_b": exported["model_dir"], "prompts": heldout_prompts, "max_new_tokens": 12,
           "device": "cpu", "output_dir": str(tmp_path / "out")}
    rc, events = run_command("compare", cfg, tmp_path)
    assert rc == 0, events[-1]
    done = finished(events)
    assert done["wins_a"] == done["wins_b"] == 0 and done["ties"] == done["examples"] == 40 and done["win_rate_a"] == 0.5
    # Identical answers: no difference, and no doubt about it.
    assert done["difference"] == {"value": 0.0, "low": 0.0, "high": 0.0, "n": 40} and done["mcnemar_p"] == 1.0
    report = json.load(open(tmp_path / "out" / "compare.json"))
    assert len(report["predictions"]) == 40 and all(p["answer_a"] == p["answer_b"] for p in report["predictions"])


def test_compare_trained_beats_untrained(demo, heldout_prompts, tmp_path):
    # The shared tiny sft model gets no held-out answer right yet; a wider one learns the task in 100 steps.
    cfg = sft_config(demo, tmp_path / "sft", steps=100, batch_size=32, checkpoint_every=100,
                     model={"n_layer": 2, "n_head": 4, "n_embd": 128, "context_length": 32})
    rc, events = run_command("sft", cfg, tmp_path)
    assert rc == 0, events[-1]
    untrained, trained = finished(events)["checkpoints"][0], finished(events)["checkpoints"][-1]
    tars = []
    for name, checkpoint in (("untrained", untrained), ("trained", trained)):
        rc, events = run_command("export", {"checkpoint": checkpoint, "output_dir": str(tmp_path / name)}, tmp_path)
        assert rc == 0, events[-1]
        tars.append(finished(events)["model_tar"])
    cfg = {"model_a": tars[1], "model_b": tars[0], "prompts": heldout_prompts, "max_new_tokens": 12, "device": "cpu"}
    rc, events = run_command("compare", cfg, tmp_path)
    assert rc == 0, events[-1]
    done = finished(events)
    assert done["exact_match_a"] > 0 and done["exact_match_b"] == 0 and done["win_rate_a"] > 0.5
    assert done["wins_a"] + done["wins_b"] + done["ties"] == 40 and done["wins_a"] == round(done["exact_match_a"] * 40)
    # b gets nothing right, so every right answer of a is a win; the paired interval lies above 0 once a wins enough.
    diff = done["difference"]
    assert diff["value"] == pytest.approx(done["exact_match_a"]) and diff["low"] <= diff["value"] <= diff["high"]
    assert (diff["low"] > 0) == (done["wins_a"] >= 3), diff


def test_compare_refuses_a_reference_the_rule_disagrees_with(exported, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "reverse 1 2 3", "reference": "1 2 3"}) + "\n")
    rc, events = run_command("compare", {"model_a": exported["model_tar"], "model_b": exported["model_tar"], "prompts": str(bad)}, tmp_path)
    assert rc == 2 and "exact reversal" in events[-1]["reason"]
    rc, events = run_command("compare", {"model_a": exported["model_tar"], "model_b": exported["model_tar"], "prompts": str(bad), "rule": "vibes"}, tmp_path)
    assert rc == 2 and "'rule'" in events[-1]["reason"]


def test_left_padded_samples_are_scored_at_their_sampled_positions():
    # GRPOTrainer left-pads prompts and passes no position ids; with the hook a padded row scores exactly as
    # the same tokens alone (GPT-2's positions are learned, so without it the scores would shift).
    from transformers import GPT2Config, GPT2LMHeadModel

    from tempered_trainer.rl import positions_from_attention_mask

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=20, n_positions=16, n_embd=16, n_layer=1, n_head=2)).eval()
    alone = torch.tensor([[5, 6, 7, 8]])
    padded, mask = torch.tensor([[0, 0, 5, 6, 7, 8]]), torch.tensor([[0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        want = model(input_ids=alone).logits
        assert not torch.allclose(model(input_ids=padded, attention_mask=mask).logits[:, 2:], want, atol=1e-4)
        positions_from_attention_mask(model)
        assert torch.allclose(model(input_ids=padded, attention_mask=mask).logits[:, 2:], want, atol=1e-5)


def test_compare_by_reference_scores_against_each_rows_own_answer(exported, tmp_path):
    # A reference rule knows nothing of the task: the untrained-looking answer "x" is right only where the row says so.
    rows = [{"prompt": "reverse 1 2 3", "reference": "3 2 1"}, {"prompt": "reverse 4 5 6", "reference": "6 5 4"}]
    prompts = tmp_path / "ref.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"model_a": exported["model_tar"], "model_b": exported["model_tar"], "prompts": str(prompts), "rule": "reference",
           "max_new_tokens": 8, "device": "cpu", "output_dir": str(tmp_path / "out")}
    rc, events = run_command("compare", cfg, tmp_path)
    assert rc == 0, events[-1]
    done = finished(events)
    report = json.load(open(tmp_path / "out" / "compare.json"))
    expected = sum(p["answer_a"] == p["reference"] for p in report["predictions"]) / 2
    assert done["rule"] == "reference" and done["exact_match_a"] == done["exact_match_b"] == expected
    assert [p["reference"] for p in report["predictions"]] == ["3 2 1", "6 5 4"]
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"prompt": "reverse 1 2"}) + "\n")
    rc, events = run_command("compare", {**cfg, "prompts": str(missing)}, tmp_path)
    assert rc == 2 and "reference" in events[-1]["reason"]
