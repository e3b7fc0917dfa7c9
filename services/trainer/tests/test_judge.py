"""judge: a judged pairwise win rate (both orders, no verdict counted, bootstrap interval) and interval."""

import json
import os

import pytest

from conftest import finished, run_command, sft_config
from tempered_trainer.judge import outcome_of, parse_verdict, summarize


def test_parse_verdict_reads_a_leading_letter_only():
    for reply, verdict in [("A", "A"), ("B.", "B"), ("**A**", "A"), ("(b) is better", "B"), ("Answer B", "B"),
                           ("The better answer is: A", "A"), ("A good answer is B", None), ("Both", None), ("", None),
                           ("4 1 9 3", None), ("AB", None), ("B is better", "B"), ("A\nbecause it reverses", "A")]:
        assert parse_verdict(reply) == verdict, reply


def test_outcome_of_both_orders():
    # first: A's answer shown first; second: B's answer shown first (there the letter B is A's answer)
    assert outcome_of("A", "B") == "win"
    assert outcome_of("B", "A") == "loss"
    assert outcome_of("A", "A") == "tie"  # the judge picked whatever came first: position, not quality
    assert outcome_of("B", "B") == "tie"
    assert outcome_of("tie", "tie") == "tie"
    assert outcome_of(None, "B") == outcome_of("A", None) == outcome_of(None, None) == "no-verdict"


def test_summary_counts_no_verdict_as_half_and_keeps_every_pair():
    pairs = [{"outcome": o, "reference_winner": w, "disagreed": d} for o, w, d in [
        ("win", "a", False), ("win", None, False), ("win", "b", True), ("loss", "b", False),
        ("tie", None, True), ("no-verdict", "a", False)]]
    s = summarize(pairs)
    assert (s["pairs"], s["wins"], s["losses"], s["ties"], s["no_verdict"], s["disagreed"]) == (6, 3, 1, 1, 1, 2)
    # (3 wins + 0.5 tie + 0.5 no verdict) / 6 pairs
    assert s["win_rate"]["value"] == pytest.approx(4 / 6) and s["win_rate"]["n"] == 6
    assert s["win_rate"]["low"] <= s["win_rate"]["value"] <= s["win_rate"]["high"]
    # the rule decides 4 pairs; the no-verdict one is not the judge's to agree with; 2 of the other 3 agree
    assert s["agreement"] == {"decided": 3, "agreed": 2}


@pytest.fixture(scope="module")
def trained_pair(demo, tmp_path_factory):
    """A model that learned the task (100 steps, wide enough to get held-out answers right), its untrained
    start, and a reward model on top of the trained one, from the demo preference pairs."""
    d = tmp_path_factory.mktemp("judge")
    cfg = sft_config(demo, d / "sft", steps=100, batch_size=32, checkpoint_every=100,
                     model={"n_layer": 2, "n_head": 4, "n_embd": 128, "context_length": 32})
    rc, events = run_command("sft", cfg, d)
    assert rc == 0, events[-1]
    untrained, trained = finished(events)["checkpoints"][0], finished(events)["checkpoints"][-1]
    rc, events = run_command("export", {"checkpoint": trained, "output_dir": str(d / "trained")}, d)
    assert rc == 0, events[-1]
    exported = finished(events)["model_tar"]
    # The demo's pairs only ever reject a wrong list of digits, so a reward model trained on them alone has never seen
    # an empty answer (what an untrained model says) and scores it above a right one (measured: 16 wins of 40). A
    # judge must have seen the failure it judges: pairs from training prompts whose rejected answer is empty.
    preferences = d / "preferences.jsonl"
    silent = [{"prompt": r["prompt"], "chosen": r["response"], "rejected": ""} for r in demo["records"][:32]]
    preferences.write_text(open(demo["preferences"]).read() + "".join(json.dumps(p) + "\n" for p in silent))
    rc, events = run_command("reward", {"preferences": str(preferences), "output_dir": str(d / "reward"), "steps": 40, "batch_size": 16,
                                        "learning_rate": 1e-2, "seed": 0, "device": "cpu", "base_model": exported}, d)
    assert rc == 0, events[-1]
    prompts = d / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"key": r["key"], "prompt": r["prompt"], "reference": r["response"]}) + "\n" for r in demo["heldout"]))
    return {"dir": d, "trained": trained, "untrained": untrained, "exported": exported, "reward": finished(events)["model_tar"], "prompts": str(prompts)}


def test_trained_model_wins_against_untrained_by_the_reward_model(demo, trained_pair, tmp_path):
    cfg = {"model_a": trained_pair["trained"], "model_b": trained_pair["untrained"], "tokenizer": demo["tokenizer"], "prompts": trained_pair["prompts"],
           "judge": trained_pair["reward"], "kind": "reward", "max_new_tokens": 12, "device": "cpu", "output_dir": str(tmp_path / "out")}
    rc, events = run_command("judge", cfg, tmp_path)
    assert rc == 0, events[-1]
    done = finished(events)
    assert done["pairs"] == 40 and done["wins"] + done["losses"] + done["ties"] + done["no_verdict"] == 40
    # A reward model reads one answer at a time: it always has a verdict, and its two orders never disagree.
    assert done["no_verdict"] == 0
    rate = done["win_rate"]
    assert rate["n"] == 40 and rate["value"] == pytest.approx((done["wins"] + 0.5 * done["ties"]) / 40)
    assert rate["value"] > 0.5 and rate["low"] > 0.5, done  # the known winner, and the interval excludes 0.5
    report = json.load(open(tmp_path / "out" / "judge.json"))
    assert [p["key"] for p in report["pairs"]] == [r["key"] for r in demo["heldout"]]
    for p in report["pairs"]:
        assert p["outcome"] in ("win", "loss", "tie") and (p["verdict_ab"], p["verdict_ba"]) in (("A", "B"), ("B", "A"), ("tie", "tie"))
    assert done["disagreed"] == sum(p["disagreed"] for p in report["pairs"])
    # Where exactly one answer is the reversal, the judge mostly sides with it.
    agreement = done["agreement"]
    assert agreement["decided"] > 0 and agreement["agreed"] / agreement["decided"] > 0.5, agreement


def test_a_model_against_itself_is_all_ties_without_asking(demo, trained_pair, tmp_path):
    cfg = {"model_a": trained_pair["exported"], "model_b": trained_pair["trained"], "tokenizer": demo["tokenizer"], "prompts": trained_pair["prompts"],
           "judge": trained_pair["reward"], "max_new_tokens": 12, "device": "cpu", "output_dir": str(tmp_path / "out")}
    rc, events = run_command("judge", cfg, tmp_path)
    assert rc == 0, events[-1]
    done = finished(events)
    assert (done["wins"], done["losses"], done["ties"], done["no_verdict"], done["disagreed"]) == (0, 0, 40, 0, 0)
    assert done["win_rate"] == {"value": 0.5, "low": 0.5, "high": 0.5, "n": 40}


def test_a_catalog_model_as_judge_counts_unreadable_replies(smollm2_dir, demo, trained_pair, tmp_path):
    assert os.path.isfile(os.path.join(smollm2_dir, "manifest.json")), f"{smollm2_dir} is missing: run infra/bootstrap.sh"
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": r["prompt"], "reference": r["response"]}) + "\n" for r in demo["heldout"][:8]))
    cfg = {"model_a": trained_pair["trained"], "model_b": trained_pair["untrained"], "tokenizer": demo["tokenizer"], "prompts": str(prompts),
           "judge": os.path.join(smollm2_dir, "model"), "kind": "lm", "max_new_tokens": 12, "device": "cpu", "output_dir": str(tmp_path / "out")}
    rc, events = run_command("judge", cfg, tmp_path)
    assert rc == 0, events[-1]
    done = finished(events)
    report = json.load(open(tmp_path / "out" / "judge.json"))
    assert done["pairs"] == 8 and done["wins"] + done["losses"] + done["ties"] + done["no_verdict"] == 8
    for p in report["pairs"]:
        if p["answer_a"] == p["answer_b"]:
            continue
        # every asked pair keeps both replies; a reply the parser cannot read is a None verdict and a no-verdict pair
        assert isinstance(p["reply_ab"], str) and isinstance(p["reply_ba"], str)
        assert p["verdict_ab"] == parse_verdict(p["reply_ab"]) and p["verdict_ba"] == parse_verdict(p["reply_ba"])
        assert (p["outcome"] == "no-verdict") == (p["verdict_ab"] is None or p["verdict_ba"] is None)
    assert done["no_verdict"] == sum(p["outcome"] == "no-verdict" for p in report["pairs"])


def test_judge_refuses_a_judge_that_cannot_read_the_pair(demo, trained_pair, tmp_path):
    # The tiny model's 32-token context cannot hold the judging question.
    cfg = {"model_a": trained_pair["exported"], "model_b": trained_pair["untrained"], "tokenizer": demo["tokenizer"], "prompts": trained_pair["prompts"],
           "judge": trained_pair["exported"], "kind": "lm", "max_new_tokens": 12, "device": "cpu", "output_dir": str(tmp_path / "out")}
    rc, events = run_command("judge", cfg, tmp_path)
    assert rc == 2 and "field 'judge'" in events[-1]["reason"] and "context length" in events[-1]["reason"], events[-1]
    rc, events = run_command("judge", {**cfg, "kind": "vibes"}, tmp_path)
    assert rc == 2 and "'kind'" in events[-1]["reason"]


def test_interval_of_scores_given_by_the_caller(tmp_path):
    rc, events = run_command("interval", {"names": ["unsafe", "flagged"], "scores": [[1, 0, 0, 0], []]}, tmp_path)
    assert rc == 0, events[-1]
    got = finished(events)["intervals"]
    assert got["unsafe"]["value"] == 0.25 and got["unsafe"]["n"] == 4 and 0 <= got["unsafe"]["low"] <= 0.25 <= got["unsafe"]["high"] <= 1
    assert got["flagged"] == {"value": 0.0, "low": 0.0, "high": 0.0, "n": 0}
    rc, events = run_command("interval", {"names": ["a"], "scores": []}, tmp_path)
    assert rc == 2 and "'scores'" in events[-1]["reason"]
