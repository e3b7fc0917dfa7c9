"""Benchmark: the model server's throughput and latency under concurrent clients, one request at a time
(`max_batch` 1, the server as it was) against dynamic batching (`max_batch` 8, `batch_wait_ms` 5), in one run.

Model: the real base model the bootstrap converted (SmolLM2-135M-Instruct, fp32, on the default device), served by
`python -m tempered_trainer serve` exactly as a deployment starts it; both servers run side by side in their own
processes and are asked in turn, level by level (one-at-a-time then batching at each concurrency), so both see the
same machine.

At 1, 4 and 16 concurrent clients, each client sends --requests chat completions one after another (greedy,
max_tokens --max-tokens, prompts cycled from a fixed list, the same for both servers). Figures per server and level:
- tokens_per_sec: completion tokens (the servers' own usage counts) / wall time from the first request to the last
  answer;
- latency p50 / p99 of whole requests (p99 by nearest rank: with few requests it is the slowest);
- ttft p50 / p99: time to the first content chunk of streamed requests, a second round of the same shape with
  `stream: true`.
Headline: speedup = batching tokens/s / one-at-a-time tokens/s at each level (greedy answers are identical on
both, which the serve tests check).

    python tests/bench/serve_throughput.py [--base-model DIR] [--requests 2 --max-tokens 24 --levels 1,4,16]

Writes tests/bench/results/serve_throughput.json and prints it.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAINER = os.path.join(ROOT, "services", "trainer")

PROMPTS = ["What is the capital of France?", "Name three fruits.", "Count from one to ten, in words.",
           "Why is the sky blue?", "Write a haiku about the sea.", "What is 12 times 12?", "Say hello in Spanish.",
           "Give me a tip for sleeping well."]


def start(model: str, max_batch: int, d: str, device: str) -> tuple:
    cfg = os.path.join(d, f"serve-{max_batch}.json")
    with open(cfg, "w") as f:
        json.dump({"model": model, "port": 0, "model_name": "bench", "device": device, "max_batch": max_batch, "batch_wait_ms": 5}, f)
    proc = subprocess.Popen([sys.executable, "-m", "tempered_trainer", "serve", "--config", cfg], cwd=TRAINER,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "started":
            return proc, f"http://127.0.0.1:{event['port']}"
    raise RuntimeError(f"the server (max_batch {max_batch}) exited before it started")


def ask(base: str, prompt: str, max_tokens: int, stream: bool) -> tuple:
    """(seconds to the whole answer, seconds to the first content, completion tokens) of one chat request."""
    body = {"model": "bench", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    req = urllib.request.Request(f"{base}/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    first, tokens = None, 0
    with urllib.request.urlopen(req, timeout=600) as r:
        if not stream:
            tokens = json.loads(r.read())["usage"]["completion_tokens"]
        else:
            for line in r:
                if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if first is None and any(c["delta"].get("content") for c in chunk["choices"]):
                    first = time.perf_counter() - t0
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
    return time.perf_counter() - t0, first, tokens


def level(base: str, clients: int, requests: int, max_tokens: int, stream: bool) -> dict:
    results, lock = [], threading.Lock()

    def client(k):
        for i in range(requests):
            out = ask(base, PROMPTS[(k * requests + i) % len(PROMPTS)], max_tokens, stream)
            with lock:
                results.append(out)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    latency = sorted(r[0] for r in results)
    pct = lambda xs, q: xs[min(len(xs) - 1, max(0, round(q * len(xs)) - 1))]  # noqa: E731 - nearest rank
    out = {"requests": len(results), "completion_tokens": sum(r[2] for r in results), "wall_s": round(wall, 3)}
    if stream:
        ttft = sorted(r[1] for r in results if r[1] is not None)
        out.update(ttft_p50_ms=round(1000 * statistics.median(ttft), 1), ttft_p99_ms=round(1000 * pct(ttft, 0.99), 1))
    else:
        out.update(tokens_per_sec=round(out["completion_tokens"] / wall, 2), latency_p50_ms=round(1000 * statistics.median(latency), 1),
                   latency_p99_ms=round(1000 * pct(latency, 0.99), 1))
    return out


def default_base_model() -> str:
    cache = os.environ.get("TEMPERED_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tempered")
    return os.path.join(os.environ.get("TEMPERED_BASE_MODELS_DIR") or os.path.join(cache, "base-models"), "smollm2-135m-instruct", "model")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-model", default=default_base_model())
    ap.add_argument("--requests", type=int, default=2, help="requests per client at each level")
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "bench", "results", "serve_throughput.json"))
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    servers = {}
    with tempfile.TemporaryDirectory() as d:
        try:
            for name, max_batch in (("one_at_a_time", 1), ("batching", 8)):
                servers[name] = start(a.base_model, max_batch, d, a.device)
            for _, base in servers.values():  # warm-up: first forwards allocate and pick kernels
                ask(base, PROMPTS[0], 4, False)
            results = {name: {} for name in servers}
            for clients in levels:
                for name, (_, base) in servers.items():
                    r = level(base, clients, a.requests, a.max_tokens, False)
                    r.update({k: v for k, v in level(base, clients, a.requests, a.max_tokens, True).items() if k.startswith("ttft")})
                    results[name][str(clients)] = r
                    print(f"{name:>14} x{clients:<3} {r['tokens_per_sec']:8.1f} tok/s  p50 {r['latency_p50_ms']:8.0f} ms  "
                          f"p99 {r['latency_p99_ms']:8.0f} ms  ttft p50 {r['ttft_p50_ms']:7.0f} ms", file=sys.stderr)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    out = {
        "bench": "serve_throughput",
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "model": a.base_model, "device": a.device, "max_tokens": a.max_tokens, "requests_per_client": a.requests,
        "servers": {"one_at_a_time": {"max_batch": 1}, "batching": {"max_batch": 8, "batch_wait_ms": 5}},
        "results": results,
        "speedup": {str(c): round(results["batching"][str(c)]["tokens_per_sec"] / results["one_at_a_time"][str(c)]["tokens_per_sec"], 2) for c in levels},
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
