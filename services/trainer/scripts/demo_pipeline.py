"""Run the demo task end to end through the CLI and print timings and exact match at each stage.

    python scripts/demo_pipeline.py --work /tmp/tempered-demo [--steps 600 ...]

Stages: demo data -> tokenize -> split by key -> eval step-0 -> sft -> eval -> export -> dpo -> eval.
This is how the demo hyperparameters in README.md were measured; it is not part of the test suite.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from tempered_trainer.demo_task import make_task, write_jsonl  # noqa: E402
from tempered_trainer.shard import read_shard, write_shard  # noqa: E402


def cli(command: str, config: dict, work: str) -> dict:
    """Run one command as the activity would; its `finished` event plus wall_s (whole process) and run_s (the work)."""
    path = os.path.join(work, f"{command}-{time.time_ns()}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "tempered_trainer", command, "--config", path], cwd=HERE, capture_output=True, text=True)
    events = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    if p.returncode != 0:
        raise SystemExit(f"{command} failed ({p.returncode}): {events[-1] if events else p.stderr[-2000:]}")
    out = events[-1]
    out["wall_s"] = round(time.perf_counter() - t0, 1)  # whole process, including ~5 s of imports
    out["run_s"] = round(out["time"] - events[0]["time"], 1)  # from `started` to `finished`
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/tempered-demo")
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--context-length", type=int, default=32)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--dpo-steps", type=int, default=40)
    ap.add_argument("--dpo-batch-size", type=int, default=16)
    ap.add_argument("--dpo-lr", type=float, default=5e-5)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-dpo", action="store_true")
    a = ap.parse_args()
    w = a.work
    os.makedirs(w, exist_ok=True)

    train, heldout, prefs = make_task(2000, 200, 300, seed=0)
    write_jsonl(f"{w}/records.jsonl", train + heldout)
    write_jsonl(f"{w}/preferences.jsonl", prefs)
    r = cli("tokenize", {"input": f"{w}/records.jsonl", "vocab_size": 512, "min_frequency": 2, "output_dir": f"{w}/tok"}, w)
    print("tokenize", r)
    shard = read_shard(f"{w}/tok/encoded.shard")
    idx = {"train": [], "heldout": []}
    for i, k in enumerate(shard.keys):
        idx[k.split("-")[0]].append(i)
    write_shard(f"{w}/train.shard", shard.select(idx["train"]))
    write_shard(f"{w}/heldout.shard", shard.select(idx["heldout"]))

    model = {"n_layer": a.n_layer, "n_head": a.n_head, "n_embd": a.n_embd, "context_length": a.context_length}
    sft = cli("sft", {
        "train_shard": f"{w}/train.shard", "tokenizer": f"{w}/tok/tokenizer.json", "output_dir": f"{w}/sft", "model": model,
        "steps": a.steps, "batch_size": a.batch_size, "learning_rate": a.lr, "warmup_steps": a.warmup,
        "weight_decay": a.weight_decay, "checkpoint_every": a.steps, "seed": a.seed, "device": "cpu", "log_every": 50,
    }, w)
    print("sft", {k: v for k, v in sft.items() if k != "checkpoints"})

    def evaluate(name: str, **src) -> dict:
        r = cli("eval", {**src, "shard": f"{w}/heldout.shard", "tokenizer": f"{w}/tok/tokenizer.json", "batch_size": 64,
                         "device": "cpu", "generate": True, "max_new_tokens": 16, "output_dir": f"{w}/eval-{name}"}, w)
        print(f"eval {name}", {k: r[k] for k in ("loss", "exact_match", "wall_s", "run_s")})
        return r

    evaluate("step0", checkpoint=sft["checkpoints"][0])
    evaluate("sft", checkpoint=sft["checkpoints"][-1])
    ex = cli("export", {"checkpoint": sft["checkpoints"][-1], "tokenizer": f"{w}/tok/tokenizer.json", "output_dir": f"{w}/export"}, w)
    print("export", ex)
    if a.skip_dpo:
        return
    dpo = cli("dpo", {"model": ex["model_tar"], "preferences": f"{w}/preferences.jsonl", "output_dir": f"{w}/dpo", "steps": a.dpo_steps,
                      "batch_size": a.dpo_batch_size, "learning_rate": a.dpo_lr, "beta": a.beta, "seed": a.seed, "device": "cpu"}, w)
    print("dpo", dpo)
    evaluate("dpo", model=dpo["model_tar"])


if __name__ == "__main__":
    main()
