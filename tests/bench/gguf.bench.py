"""Benchmark: GGUF exports per quantization (f16, q8_0, q4_k_m) against the unquantized model, in one run.

Two models, both through the trainer's `gguf` command (llama.cpp's converter and quantizer, as a llamacpp deployment
exports them):
- SmolLM2-135M-Instruct, the catalog base (fp32 safetensors): file size per type, and speed as deployments serve it:
  `python -m tempered_trainer serve` (PyTorch, fp32, the tempered engine) and `python -m llama_cpp.server` on each
  GGUF file (the llamacpp engine), started one after another on the same machine and asked the same chat prompts
  one at a time (greedy, --max-tokens). tokens/s = completion tokens (each server's own usage) / wall time of the
  round. `agreement`: the share of prompts whose greedy answer equals the torch server's word for word.
- the demo task's tiny GPT-2 ("reverse 3 9 1 4" -> "4 1 9 3"), trained here for --steps on the demo data, at a
  quarter of its steps (half learned) and at the end, scored on its held-out records (lists never seen in
  training): exact match of the fp32 torch model (the trainer's own greedy decoding) and of llama.cpp on each GGUF
  file through its chat template, with the change against fp32 and the share of answers equal to fp32's.

    python tests/bench/gguf.bench.py [--base-model DIR] [--max-tokens 32] [--steps 400] [--heldout 100]

Writes tests/bench/results/gguf.json and prints it.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAINER = os.path.join(ROOT, "services", "trainer")
sys.path.insert(0, TRAINER)

PROMPTS = ["What is the capital of France?", "Name three fruits.", "Count from one to ten, in words.",
           "Why is the sky blue?", "Write a haiku about the sea.", "What is 12 times 12?", "Say hello in Spanish.",
           "Give me a tip for sleeping well."]
TYPES = ["f16", "q8_0", "q4_k_m"]


def trainer(command: str, config: dict, d: str) -> dict:
    path = os.path.join(d, f"{command}-{len(os.listdir(d))}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    out = subprocess.run([sys.executable, "-m", "tempered_trainer", command, "--config", path], cwd=TRAINER, capture_output=True, text=True)
    last = json.loads(out.stdout.strip().splitlines()[-1])
    if last["event"] != "finished":
        raise RuntimeError(f"{command}: {last}")
    return last


def wait_up(url: str, proc, limit: float = 300) -> None:
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}) before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {limit}s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat(base: str, prompt: str, max_tokens: int) -> tuple:
    body = {"model": "bench", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}
    req = urllib.request.Request(f"{base}/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        out = json.loads(r.read())
    return out["choices"][0]["message"]["content"], out["usage"]["completion_tokens"]


def serve_round(cmd: list, health: str, port: int, max_tokens: int) -> dict:
    proc = subprocess.Popen(cmd, cwd=TRAINER, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(base + health, proc)
        chat(base, PROMPTS[0], 4)  # warm-up, not counted
        t0, answers, tokens = time.perf_counter(), [], 0
        for p in PROMPTS:
            text, n = chat(base, p, max_tokens)
            answers.append(text)
            tokens += n
        wall = time.perf_counter() - t0
        return {"answers": answers, "completion_tokens": tokens, "wall_s": round(wall, 3), "tokens_per_sec": round(tokens / wall, 2)}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def smollm2(base_model: str, d: str, max_tokens: int, threads: int) -> dict:
    model_tar = os.path.join(os.path.dirname(base_model.rstrip("/")), "model.tar") if os.path.isdir(base_model) else base_model
    t0 = time.perf_counter()
    done = trainer("gguf", {"model": model_tar, "output_dir": os.path.join(d, "smollm2"), "check_prompt": PROMPTS[0], "threads": threads}, d)
    export_s = time.perf_counter() - t0
    files = {f["type"]: f for f in done["files"]}
    port = free_port()
    cfg = os.path.join(d, "serve.json")
    with open(cfg, "w") as f:
        json.dump({"model": model_tar, "port": port, "model_name": "bench", "device": "cpu"}, f)
    torch_run = serve_round([sys.executable, "-m", "tempered_trainer", "serve", "--config", cfg], "/health", port, max_tokens)
    out = {"model": "smollm2-135m-instruct", "export_seconds": round(export_s, 1), "model_tar_bytes": os.path.getsize(model_tar),
           "torch_fp32": {k: v for k, v in torch_run.items() if k != "answers"}, "gguf": {}}
    for t in TYPES:
        port = free_port()
        run = serve_round([sys.executable, "-m", "llama_cpp.server", "--model", files[t]["path"], "--model_alias", "bench", "--host", "127.0.0.1",
                           "--port", str(port), "--chat_format", "chat_template.default", "--n_ctx", "2048", "--n_threads", str(threads)],
                          "/v1/models", port, max_tokens)
        same = sum(a.strip() == b.strip() for a, b in zip(run["answers"], torch_run["answers"]))
        out["gguf"][t] = {"bytes": files[t]["bytes"], "mib": round(files[t]["bytes"] / 2**20, 1), "sha256": files[t]["sha256"],
                          "tokens_per_sec": run["tokens_per_sec"], "speedup_vs_torch": round(run["tokens_per_sec"] / torch_run["tokens_per_sec"], 2),
                          "completion_tokens": run["completion_tokens"], "agreement_with_torch": round(same / len(PROMPTS), 3),
                          "answer_to_first_prompt": run["answers"][0]}
    out["torch_fp32"]["answer_to_first_prompt"] = torch_run["answers"][0]
    return out


def demo(d: str, steps: int, n_heldout: int, threads: int) -> dict:
    import llama_cpp
    import torch

    from tempered_trainer.demo_task import make_task, write_jsonl
    from tempered_trainer.judge import answers_of
    from tempered_trainer.model_files import load_pretrained

    train, heldout, _ = make_task(n_train=2000, n_heldout=n_heldout, n_prefs=0, seed=0)
    write_jsonl(os.path.join(d, "train.jsonl"), train)
    trainer("tokenize", {"input": os.path.join(d, "train.jsonl"), "output_dir": os.path.join(d, "tok"), "vocab_size": 512}, d)
    sft = trainer("sft", {"train_shard": os.path.join(d, "tok", "encoded.shard"), "tokenizer": os.path.join(d, "tok", "tokenizer.json"),
                          "output_dir": os.path.join(d, "sft"), "model": {"n_layer": 2, "n_head": 4, "n_embd": 128, "context_length": 64},
                          "steps": steps, "batch_size": 32, "learning_rate": 3e-3, "warmup_steps": 20, "weight_decay": 0.01,
                          "checkpoint_every": steps // 4, "seed": 0, "device": "cpu", "log_every": steps}, d)
    prompts, refs = [r["prompt"] for r in heldout], [r["response"] for r in heldout]
    em = lambda answers: sum(a.strip() == r for a, r in zip(answers, refs)) / len(refs)  # noqa: E731
    out = {"model": "demo GPT-2 (2 layers, 128 wide, trained here)", "heldout": len(refs)}
    # A quarter of the way (the task half learned, where rounding can flip answers) and at the end.
    for label, ckpt in ((f"step {steps // 4}", sft["checkpoints"][1]), (f"step {steps}", sft["checkpoints"][-1])):
        tag = label.replace(" ", "-")
        model_tar = trainer("export", {"checkpoint": ckpt, "output_dir": os.path.join(d, f"demo-{tag}")}, d)["model_tar"]
        done = trainer("gguf", {"model": model_tar, "output_dir": os.path.join(d, f"demo-gguf-{tag}"), "check_prompt": "reverse 1 2 3", "threads": threads}, d)
        files = {f["type"]: f for f in done["files"]}
        model, tokenizer = load_pretrained(model_tar, torch.device("cpu"))
        torch_answers = answers_of(model, tokenizer, prompts, 16, 32)
        row = {"torch_fp32": {"exact_match": round(em(torch_answers), 4)}, "gguf": {}}
        for t in TYPES:
            llm = llama_cpp.Llama(model_path=files[t]["path"], n_ctx=0, n_threads=threads, verbose=False, chat_format="chat_template.default")
            answers = [llm.create_chat_completion(messages=[{"role": "user", "content": p}], temperature=0.0, max_tokens=16)["choices"][0]["message"]["content"] for p in prompts]
            value = em(answers)
            row["gguf"][t] = {"bytes": files[t]["bytes"], "exact_match": round(value, 4), "change_vs_torch": round(value - row["torch_fp32"]["exact_match"], 4),
                              "agreement_with_torch": round(sum(a.strip() == b for a, b in zip(answers, torch_answers)) / len(prompts), 4)}
            del llm
        out[label] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-model", default=os.path.expanduser("~/.cache/tempered/base-models/smollm2-135m-instruct/model"))
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--heldout", type=int, default=100)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    import llama_cpp

    with tempfile.TemporaryDirectory(prefix="tempered-bench-gguf-") as d:
        result = {
            "benchmark": "gguf", "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "llama_cpp_python": llama_cpp.__version__, "threads": a.threads},
            "settings": {"prompts": len(PROMPTS), "max_tokens": a.max_tokens, "one request at a time, greedy": True},
            "smollm2": smollm2(a.base_model, d, a.max_tokens, a.threads),
            "demo": demo(d, a.steps, a.heldout, a.threads),
        }
    os.makedirs(os.path.join(ROOT, "tests", "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "tests", "bench", "results", "gguf.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
