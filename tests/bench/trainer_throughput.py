"""Benchmark: what our sft loop costs against a bare PyTorch training loop.

Both train the same GPT-2 (built by tempered_trainer.architecture.build_model from the same model_args, same seed) on
batches of the same shape (batch_size x seq_len tokens, every record exactly seq_len long and every target
counted in the loss), with the same optimizer (AdamW, betas (0.9, 0.95), eps 1e-8, weight decay 0.01 on
matrices only, the same warmup + cosine LambdaLR schedule) and the same gradient clipping at 1.0, in one
process and interleaved repeat by repeat (ours then bare, bare then ours, ...) so both see the same machine.

- our loop: `tempered_trainer.sft.run` itself, as the CLI runs it: batches assembled from a shard, a `step`
  event per step (log_every 1), loss.item() every step. A checkpoint is written at step 0 and at the end only
  (checkpoint_every = steps), both outside the timed window. Its rate is taken from the step events' clocks:
  (last step - warm-up steps) / (time of the last step event - time of the last warm-up step event).
- bare loop: pre-built tensors already on the device, forward, cross entropy, backward, clip, step, schedule;
  no events, no checkpoints, no .item(); the device is synchronised at both ends of the timed window.

Headline: ratio = median steps/s of our loop / median steps/s of the bare loop (goal >= 0.95); tokens/s of each
= steps/s x batch_size x seq_len. On CUDA it also measures a GPT-2-124M-sized config (n_layer 12, n_head 12,
n_embd 768, context 1024, vocab 50257) under bf16 autocast and reports MFU against the H100's dense bf16 peak
of 989e12 FLOP/s, with training FLOPs per token approximated as 6 x N (N = parameter count, tied embedding
counted once; attention's own FLOPs are left out of the approximation). Without CUDA that part is skipped.

    python tests/bench/trainer_throughput.py [--repeats 7 --steps 60 --warmup 10]

Writes tests/bench/results/trainer_throughput.json and prints it.
"""

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "services", "trainer"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from tempered_trainer import sft  # noqa: E402
from tempered_trainer.architecture import build_model, count_params, model_args_from  # noqa: E402
from tempered_trainer.devices import autocast, resolve_device  # noqa: E402
from tempered_trainer.sft import SFTConfig  # noqa: E402
from tempered_trainer.shard import from_records, write_shard  # noqa: E402
from tempered_trainer.template import EOS, PAD  # noqa: E402

H100_BF16_DENSE_PEAK = 989e12  # FLOP/s

CPU_MODEL = {"n_layer": 2, "n_head": 4, "n_embd": 128, "context_length": 64}  # the demo model (README)
GPU_MODEL = {"n_layer": 12, "n_head": 12, "n_embd": 768, "context_length": 1024}  # GPT-2 124M


def write_inputs(d: str, vocab_size: int, seq_len: int, records: int, seed: int = 0) -> tuple:
    """(shard path, tokenizer path): a word-level tokenizer of exactly vocab_size tokens (ids 0 and 1 are
    <|endoftext|> and <|pad|>) and `records` random records of exactly seq_len tokens, all of them targets."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    vocab = {EOS: 0, PAD: 1, **{f"t{i}": i for i in range(2, vocab_size)}}
    tok = Tokenizer(WordLevel(vocab, unk_token=PAD))
    tok.add_special_tokens([EOS, PAD])
    tok_path = os.path.join(d, "tokenizer.json")
    tok.save(tok_path)
    rng = np.random.default_rng(seed)
    tokens = [rng.integers(2, vocab_size, seq_len).tolist() for _ in range(records)]
    # mask 0 on the first token only: its *target* (the second token) onward is scored, seq_len - 1 per record,
    # exactly the positions the bare loop scores.
    masks = [[0] + [1] * (seq_len - 1) for _ in range(records)]
    shard_path = os.path.join(d, "bench.shard")
    write_shard(shard_path, from_records([f"r{i}" for i in range(records)], tokens, masks, vocab_size, 0))
    return shard_path, tok_path


def sft_config(d, shard, tok, model, batch_size, steps, device) -> dict:
    return {"train_shard": shard, "tokenizer": tok, "output_dir": os.path.join(d, f"out-{time.time_ns()}"), "model": model,
            "steps": steps, "batch_size": batch_size, "learning_rate": 3e-4, "warmup_steps": 5, "weight_decay": 0.01,
            "checkpoint_every": steps, "seed": 0, "device": device, "log_every": 1}


def our_loop(cfg: dict, warmup: int) -> float:
    """Steps/s of tempered_trainer.sft.run after `warmup` steps, from its own step events."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        sft.run(cfg)
    steps = [json.loads(line) for line in out.getvalue().splitlines() if '"event": "step"' in line]
    t = {e["step"]: e["time"] for e in steps}
    last = max(t)
    return (last - warmup) / (t[last] - t[warmup])


def bare_loop(cfg: dict, vocab_size: int, seq_len: int, warmup: int) -> float:
    """Steps/s of a plain loop over the same model, optimizer and batch shape."""
    device = resolve_device(cfg["device"])
    c = SFTConfig(**{k: v for k, v in cfg.items()})
    torch.manual_seed(c.seed)
    model = build_model(model_args_from(**c.model, vocab_size=vocab_size, eos_id=0)).to(device)
    opt, sched = sft.make_optimizer(model, c)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(2, vocab_size, (c.batch_size, seq_len), generator=g).to(device) for _ in range(8)]
    params = list(model.parameters())
    model.train()

    def step(i: int) -> None:
        x = batches[i % len(batches)]
        with autocast(device):
            logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(warmup):
        step(i)
    sync()
    t0 = time.perf_counter()
    for i in range(warmup, c.steps):
        step(i)
    sync()
    return (c.steps - warmup) / (time.perf_counter() - t0)


def measure(device: str, model: dict, vocab_size: int, batch_size: int, steps: int, warmup: int, repeats: int) -> dict:
    seq_len = model["context_length"]
    with tempfile.TemporaryDirectory(prefix="tempered-bench-") as d:
        shard, tok = write_inputs(d, vocab_size, seq_len, records=batch_size * 8)
        ours, bare = [], []
        for r in range(repeats):
            # Alternate which loop goes first, so neither always inherits the other's caches or clock state.
            runs = [lambda: ours.append(our_loop(sft_config(d, shard, tok, model, batch_size, steps, device), warmup)),
                    lambda: bare.append(bare_loop(sft_config(d, shard, tok, model, batch_size, steps, device), vocab_size, seq_len, warmup))]
            for run in runs if r % 2 == 0 else runs[::-1]:
                run()
            print(f"  {device} repeat {r + 1}/{repeats}: ours {ours[-1]:.2f} steps/s, bare {bare[-1]:.2f} steps/s", file=sys.stderr)
    n_params = count_params(build_model(model_args_from(**model, vocab_size=vocab_size, eos_id=0)))
    tokens = batch_size * seq_len
    med_ours, med_bare = statistics.median(ours), statistics.median(bare)
    result = {
        "device": device, "model": model, "vocab_size": vocab_size, "params": n_params, "batch_size": batch_size, "seq_len": seq_len,
        "steps_per_repeat": steps, "warmup_steps": warmup, "repeats": repeats,
        "ours_steps_per_sec": {"median": med_ours, "min": min(ours), "max": max(ours), "all": ours},
        "bare_steps_per_sec": {"median": med_bare, "min": min(bare), "max": max(bare), "all": bare},
        "ratio": med_ours / med_bare,
        "ratio_per_repeat_median": statistics.median(o / b for o, b in zip(ours, bare)),
        "ours_tokens_per_sec": med_ours * tokens,
        "bare_tokens_per_sec": med_bare * tokens,
    }
    if device == "cuda":
        flops_per_token = 6 * n_params
        result.update(flops_per_token=flops_per_token, flops_note="6 x N per token, N = parameter count (tied embedding once), attention FLOPs left out",
                      peak_flops=H100_BF16_DENSE_PEAK, gpu=torch.cuda.get_device_name(0), precision="bf16 autocast, fp32 master weights",
                      ours_mfu=med_ours * tokens * flops_per_token / H100_BF16_DENSE_PEAK,
                      bare_mfu=med_bare * tokens * flops_per_token / H100_BF16_DENSE_PEAK)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=60, help="steps per repeat, warm-up included")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--gpu-repeats", type=int, default=3)
    ap.add_argument("--gpu-steps", type=int, default=30)
    ap.add_argument("--gpu-batch-size", type=int, default=16)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "bench", "results", "trainer_throughput.json"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    t0 = time.perf_counter()
    results = {
        "benchmark": "trainer throughput: tempered sft loop vs a bare PyTorch loop (same model, batch, optimizer)",
        "machine": f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), python {platform.python_version()}",
        "cpu": measure("cpu", CPU_MODEL, 512, a.batch_size, a.steps, a.warmup, a.repeats),
    }
    if torch.cuda.is_available():
        results["cuda_gpt2_124m"] = measure("cuda", GPU_MODEL, 50257, a.gpu_batch_size, a.gpu_steps, min(a.warmup, a.gpu_steps // 3), a.gpu_repeats)
    else:
        results["cuda_gpt2_124m"] = None
        results["cuda_note"] = "skipped: no CUDA device visible"
    results["headline_ratio"] = results["cpu"]["ratio"]
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    results["at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
