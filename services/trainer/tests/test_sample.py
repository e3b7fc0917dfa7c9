"""`sample`: several sampled responses per prompt (the pairs people label), deterministic for a seed."""

import json

import pytest

from conftest import finished, run_command


@pytest.fixture(scope="session")
def prompts(demo, tmp_path_factory):
    path = tmp_path_factory.mktemp("sample") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"key": r["key"], "prompt": r["prompt"]}) + "\n" for r in demo["heldout"]))
    return str(path)


def sample(exported, prompts, out, tmp_path, **overrides):
    cfg = {"model": exported["model_tar"], "prompts": prompts, "output_dir": str(out), "device": "cpu", **overrides}
    rc, events = run_command("sample", cfg, tmp_path)
    assert rc == 0, events[-1]
    assert events[0]["event"] == "started" and events[0]["command"] == "sample"
    rows = [json.loads(line) for line in open(out / "samples.jsonl", encoding="utf-8")]
    return finished(events), rows


def test_samples_are_deterministic_for_a_seed(demo, exported, prompts, tmp_path):
    done, first = sample(exported, prompts, tmp_path / "a", tmp_path, seed=7, max_new_tokens=12)
    _, again = sample(exported, prompts, tmp_path / "b", tmp_path, seed=7, max_new_tokens=12)
    _, other = sample(exported, prompts, tmp_path / "c", tmp_path, seed=8, max_new_tokens=12)
    assert first == again
    assert first != other
    assert done["prompts"] == len(first) == len(demo["heldout"]) and done["samples"] == str(tmp_path / "a" / "samples.jsonl")
    assert [r["prompt"] for r in first] == [r["prompt"] for r in demo["heldout"]]  # input order, prompts as given
    for r in first:
        assert len(r["responses"]) == 2 and all(isinstance(x, str) and x == x.strip() and "<|" not in x for x in r["responses"])
    assert done["distinct"] == sum(len(set(r["responses"])) > 1 for r in first)


def test_two_responses_differ_for_most_prompts_at_temperature_one(exported, prompts, tmp_path):
    done, rows = sample(exported, prompts, tmp_path / "out", tmp_path)
    assert done["distinct"] > 0.75 * done["prompts"], done
    # More samples per prompt, and a batch smaller than one prompt's copies, work the same way.
    done, rows = sample(exported, prompts, tmp_path / "three", tmp_path, samples=3, batch_size=2, max_new_tokens=4)
    assert all(len(r["responses"]) == 3 for r in rows) and done["prompts"] == len(rows)


def test_sample_config_errors_name_the_field(exported, prompts, tmp_path):
    base = {"model": exported["model_tar"], "prompts": prompts, "output_dir": str(tmp_path / "out"), "device": "cpu"}
    cases = [
        ({"samples": 1}, "'samples'"),
        ({"temperature": 0}, "'temperature'"),
        ({"max_new_tokens": 0}, "'max_new_tokens'"),
        ({"batch_size": 0}, "'batch_size'"),
        ({"seed": -1}, "'seed'"),
        ({"device": "tpu"}, "'device'"),
        ({"samples": "2"}, "'samples'"),
        ({"output_dir": ""}, "'output_dir'"),
        ({"top_k": 5}, "'top_k'"),
    ]
    for overrides, needle in cases:
        rc, events = run_command("sample", {**base, **overrides}, tmp_path)
        assert rc == 2 and events[-1]["event"] == "error" and events[-1]["retryable"] is False, (overrides, events[-1])
        assert needle in events[-1]["reason"], (needle, events[-1]["reason"])
    missing = {k: v for k, v in base.items() if k != "prompts"}
    rc, events = run_command("sample", missing, tmp_path)
    assert rc == 2 and "'prompts'" in events[-1]["reason"]
