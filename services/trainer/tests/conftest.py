"""Shared fixtures: the demo task ("reverse a list of digits") generated into temp dirs, and a helper that runs
a command in-process exactly as the CLI would, returning its exit code and parsed events."""

import contextlib
import io
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tempered_trainer.__main__ import main  # noqa: E402
from tempered_trainer.demo_task import make_task, write_jsonl  # noqa: E402
from tempered_trainer.shard import read_shard, write_shard  # noqa: E402

TINY_MODEL = {"n_layer": 2, "n_head": 2, "n_embd": 32, "context_length": 32}


def run_command(command: str, config: dict, workdir) -> tuple:
    """(exit code, events) of `python -m tempered_trainer <command>`, run in this process."""
    path = os.path.join(str(workdir), f"{command}-config-{len(os.listdir(str(workdir)))}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main([command, "--config", path])
    lines = out.getvalue().splitlines()
    events = [json.loads(line) for line in lines]  # every stdout line must be an event
    assert all("event" in e and isinstance(e["time"], float) for e in events)
    return rc, events


def finished(events) -> dict:
    assert events and events[-1]["event"] == "finished", events[-3:]
    return events[-1]


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """Demo data, tokenized (vocab 512) and split by key into train / held-out shards."""
    d = tmp_path_factory.mktemp("demo")
    train, heldout, prefs = make_task(n_train=400, n_heldout=40, n_prefs=64, seed=1)
    write_jsonl(d / "records.jsonl", train + heldout)
    write_jsonl(d / "preferences.jsonl", prefs)
    rc, events = run_command("tokenize", {"input": str(d / "records.jsonl"), "vocab_size": 512, "min_frequency": 2, "output_dir": str(d / "tok")}, d)
    assert rc == 0, events
    shard = read_shard(str(d / "tok" / "encoded.shard"))
    split = {"train": [], "heldout": []}
    for i, key in enumerate(shard.keys):
        split[key.split("-")[0]].append(i)
    write_shard(str(d / "train.shard"), shard.select(split["train"]))
    write_shard(str(d / "heldout.shard"), shard.select(split["heldout"]))
    return {
        "dir": d,
        "records": train + heldout,
        "heldout": heldout,
        "tokenizer": str(d / "tok" / "tokenizer.json"),
        "encoded": str(d / "tok" / "encoded.shard"),
        "train_shard": str(d / "train.shard"),
        "heldout_shard": str(d / "heldout.shard"),
        "preferences": str(d / "preferences.jsonl"),
    }


def sft_config(demo, output_dir, **overrides) -> dict:
    cfg = {
        "train_shard": demo["train_shard"], "tokenizer": demo["tokenizer"], "output_dir": str(output_dir), "model": dict(TINY_MODEL),
        "steps": 60, "batch_size": 16, "learning_rate": 3e-3, "warmup_steps": 5, "weight_decay": 0.01,
        "checkpoint_every": 30, "seed": 0, "device": "cpu",
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="session")
def sft_run(demo, tmp_path_factory):
    """One short sft run shared by the eval, export, dpo and serve tests."""
    d = tmp_path_factory.mktemp("sft")
    rc, events = run_command("sft", sft_config(demo, d / "out"), d)
    assert rc == 0, events[-1]
    return {"dir": d, "events": events, "finished": finished(events)}


@pytest.fixture(scope="session")
def exported(demo, sft_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    rc, events = run_command("export", {"checkpoint": sft_run["finished"]["checkpoints"][-1], "tokenizer": demo["tokenizer"], "output_dir": str(d / "out")}, d)
    assert rc == 0, events[-1]
    return finished(events)


def base_models_dir() -> str:
    """Where infra/bootstrap.sh converts the base models: packages/config's `baseModelsDir`, same env vars."""
    if os.environ.get("TEMPERED_BASE_MODELS_DIR"):
        return os.path.abspath(os.environ["TEMPERED_BASE_MODELS_DIR"])
    cache = os.environ.get("TEMPERED_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tempered")
    return os.path.join(os.path.abspath(cache), "base-models")


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The converted SmolLM2-135M-Instruct folder (model/, model.tar, manifest.json). Not checked here: the tests
    check it themselves, so that a missing conversion FAILS them (with what to run) instead of erroring or skipping."""
    return os.path.join(base_models_dir(), "smollm2-135m-instruct")
