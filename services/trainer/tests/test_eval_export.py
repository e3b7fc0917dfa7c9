import hashlib
import json
import math
import os
import tarfile

import pytest
import torch

from conftest import finished, run_command
from tempered_trainer.checkpoint import load_checkpoint_model
from tempered_trainer.model_files import load_pretrained


def test_eval_checkpoint(demo, sft_run, tmp_path):
    cfg = {"checkpoint": sft_run["finished"]["checkpoints"][-1], "shard": demo["heldout_shard"], "tokenizer": demo["tokenizer"],
           "batch_size": 16, "device": "cpu", "generate": True, "max_new_tokens": 12, "output_dir": str(tmp_path / "out")}
    rc, events = run_command("eval", cfg, tmp_path)
    assert rc == 0, events[-1]
    ev = [e for e in events if e["event"] == "eval"][0]
    assert math.isfinite(ev["loss"]) and math.isclose(ev["perplexity"], math.exp(ev["loss"]), rel_tol=1e-9)
    assert 0.0 <= ev["exact_match"] <= 1.0 and ev["examples"] == len(demo["heldout"])
    report = json.load(open(tmp_path / "out" / "eval.json"))["results"][0]
    assert report["loss"] == ev["loss"] and len(report["predictions"]) == len(demo["heldout"])
    assert report["predictions"][0]["reference"] == demo["heldout"][0]["response"]
    # exact match with its n and bootstrap interval, from the same per-record verdicts
    ci = ev["intervals"]["exact_match"]
    assert ci["value"] == ev["exact_match"] and ci["n"] == ev["generated"] == len(demo["heldout"])
    assert 0.0 <= ci["low"] <= ci["value"] <= ci["high"] <= 1.0
    assert ci["value"] == sum(p["correct"] for p in report["predictions"]) / ci["n"]
    # free-text scores per answer, averaged, each with its interval; an exact answer scores 1 on both
    rc, events = run_command("eval", {**cfg, "text_metrics": ["rouge_l", "chrf"], "output_dir": str(tmp_path / "text")}, tmp_path)
    assert rc == 0, events[-1]
    scored = json.load(open(tmp_path / "text" / "eval.json"))["results"][0]
    for name in ("rouge_l", "chrf"):
        per = [p[name] for p in scored["predictions"]]
        assert scored[name] == pytest.approx(sum(per) / len(per)) and scored["intervals"][name]["n"] == len(per)
        assert all(p[name] == pytest.approx(1.0) for p in scored["predictions"] if p["correct"])
    rc, refused = run_command("eval", {**cfg, "text_metrics": ["bleu"]}, tmp_path)
    assert rc == 2 and "field 'text_metrics'" in refused[-1]["reason"], refused[-1]
    # the untrained baseline is worse than the trained model
    rc, base = run_command("eval", {**cfg, "checkpoint": sft_run["finished"]["checkpoints"][0], "generate": False}, tmp_path)
    assert rc == 0 and finished(base)["loss"] > ev["loss"] and "exact_match" not in finished(base)


def test_eval_scores_several_models_in_order(demo, sft_run, exported, tmp_path):
    checkpoints = sft_run["finished"]["checkpoints"]
    cfg = {"checkpoints": [checkpoints[0], checkpoints[-1], exported["model_tar"]], "shard": demo["heldout_shard"],
           "tokenizer": demo["tokenizer"], "batch_size": 16, "device": "cpu", "output_dir": str(tmp_path / "out")}
    rc, events = run_command("eval", cfg, tmp_path)
    assert rc == 0, events[-1]
    results = finished(events)["results"]
    assert [r["checkpoint"] for r in results] == cfg["checkpoints"]
    assert results[0]["step"] == 0 and results[1]["step"] > 0 and results[2]["step"] is None
    assert results[0]["loss"] > results[1]["loss"], "training lowered the held-out loss"
    assert math.isclose(results[1]["loss"], results[2]["loss"], rel_tol=1e-5), "the exported model is the checkpoint"
    assert len([e for e in events if e["event"] == "eval"]) == 3


def test_eval_computes_loss_only_of_the_targets_asked(demo, sft_run, tmp_path):
    checkpoints = sft_run["finished"]["checkpoints"]
    cfg = {"checkpoints": [checkpoints[0], checkpoints[-1]], "shard": demo["heldout_shard"], "tokenizer": demo["tokenizer"],
           "batch_size": 16, "device": "cpu", "generate": True, "max_new_tokens": 12, "output_dir": str(tmp_path / "out")}
    rc, events = run_command("eval", {**cfg, "loss_targets": [1]}, tmp_path)
    assert rc == 0, events[-1]
    first, second = finished(events)["results"]
    assert first["loss"] is None and first["perplexity"] is None and 0.0 <= first["exact_match"] <= 1.0
    assert [e["what"] for e in events if e["event"] == "progress"].count("loss") <= 1, "one loss pass at most"
    rc, full = run_command("eval", cfg, tmp_path)
    assert rc == 0
    both = finished(full)["results"]
    assert second["loss"] == both[1]["loss"] and first["exact_match"] == both[0]["exact_match"], "the same figures as scoring all"
    # A target left out without generate would not be scored at all; an index past the targets is a typo.
    for bad, message in (({"generate": False, "loss_targets": [1]}, "only with generate"), ({"loss_targets": [2]}, "indexes of the 2 targets")):
        rc, refused = run_command("eval", {**cfg, **bad}, tmp_path)
        assert rc == 2 and "field 'loss_targets'" in refused[-1]["reason"] and message in refused[-1]["reason"], refused[-1]


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_export_is_reproducible_and_loadable(demo, sft_run, exported, tmp_path):
    rc, again = run_command("export", {"checkpoint": sft_run["finished"]["checkpoints"][-1], "tokenizer": demo["tokenizer"], "output_dir": str(tmp_path / "again")}, tmp_path)
    assert rc == 0
    assert sha256(exported["model_tar"]) == sha256(finished(again)["model_tar"])
    files = sorted(os.listdir(exported["model_dir"]))
    assert files == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    with tarfile.open(exported["model_tar"]) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == files and all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)

    ckpt_model, _ = load_checkpoint_model(sft_run["finished"]["checkpoints"][-1], torch.device("cpu"))
    x = torch.tensor([[5, 6, 7, 8]])
    for source in (exported["model_dir"], exported["model_tar"]):
        model, tok = load_pretrained(source, torch.device("cpu"))
        assert tok.eos_token_id == 0
        with torch.no_grad():
            assert torch.allclose(model(input_ids=x).logits, ckpt_model(input_ids=x).logits, atol=1e-6)

    # eval accepts the exported model (tar) without a separate tokenizer
    rc, events = run_command("eval", {"model": exported["model_tar"], "shard": demo["heldout_shard"], "batch_size": 8, "device": "cpu", "output_dir": str(tmp_path / "ev")}, tmp_path)
    assert rc == 0 and math.isfinite(finished(events)["loss"])
