import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import torch

from tempered_trainer.model_files import load_pretrained
from tempered_trainer.serve import BadRequest, Cancelled, Choice, Completer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def http(method, url, body=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def sse(url, body):
    """The `data:` payloads of a streamed answer, parsed ([DONE] as the string)."""
    req = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        events = [e for e in r.read().decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events), events
    return [e[6:] if e[6:] == "[DONE]" else json.loads(e[6:]) for e in events]


def test_serve_answers_and_stops_on_sigterm(exported, tmp_path):
    cfg = tmp_path / "serve.json"
    cfg.write_text(json.dumps({"model": exported["model_tar"], "host": "127.0.0.1", "port": 0, "model_name": "demo", "device": "cpu"}))
    proc = subprocess.Popen([sys.executable, "-m", "tempered_trainer", "serve", "--config", str(cfg)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        started = json.loads(proc.stdout.readline())
        assert started["event"] == "started" and started["port"] > 0
        base = f"http://127.0.0.1:{started['port']}"
        assert http("GET", f"{base}/health") == (200, {"status": "ok"})
        status, models = http("GET", f"{base}/v1/models")
        assert status == 200 and models["data"][0]["id"] == "demo"
        status, out = http("POST", f"{base}/v1/completions", {"model": "demo", "prompt": "reverse 1 2 3", "max_tokens": 8, "temperature": 0})
        assert status == 200 and out["object"] == "text_completion" and out["model"] == "demo"
        choice = out["choices"][0]
        assert isinstance(choice["text"], str) and choice["finish_reason"] in ("stop", "length") and "<|endoftext|>" not in choice["text"]
        assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]
        # greedy is deterministic
        assert http("POST", f"{base}/v1/completions", {"prompt": "reverse 1 2 3", "max_tokens": 8})[1]["choices"][0]["text"] == choice["text"]
        assert http("POST", f"{base}/v1/completions", {"prompt": 5})[0] == 400
        # chat: the plain template renders a one-turn conversation exactly like the completion's prompt
        status, chat = http("POST", f"{base}/v1/chat/completions", {"model": "demo", "messages": [{"role": "user", "content": "reverse 1 2 3"}], "max_tokens": 8})
        assert status == 200 and chat["object"] == "chat.completion" and chat["choices"][0]["message"] == {"role": "assistant", "content": choice["text"]}
        assert chat["usage"] == out["usage"]
        for bad in ([], [{"role": "tool", "content": "x"}], [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]):
            status, err = http("POST", f"{base}/v1/chat/completions", {"messages": bad})
            assert status == 400 and "messages" in err["error"]["message"], (bad, err)
        # streamed: server-sent events in OpenAI's chunk format, on a connection kept usable (chunked encoding)
        events = sse(f"{base}/v1/chat/completions", {"messages": [{"role": "user", "content": "reverse 1 2 3"}], "max_tokens": 8, "stream": True})
        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == choice["text"]
        assert chunks[-1]["choices"][0]["finish_reason"] == choice["finish_reason"]
        # a refused streaming request is a plain 400 naming the parameter
        status, err = http("POST", f"{base}/v1/completions", {"prompt": "x", "stream": True, "echo": True})
        assert status == 400 and err["error"]["param"] == "echo"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        last = json.loads(proc.stdout.read().strip().splitlines()[-1])
        assert last["event"] == "finished" and last["requests"] == 4 and last["cancelled"] == 0
    finally:
        if proc.poll() is None:
            proc.kill()


# --- the OpenAI surface: n, prompt lists, stop, seed, streaming, refusals, cancellation -------------------------



@pytest.fixture(scope="module")
def completer(exported):
    model, tokenizer = load_pretrained(exported["model_tar"], torch.device("cpu"))
    return Completer(model, tokenizer, "demo", max_tokens_limit=64)


def ask(completer, kind, **body):
    return completer.answer(completer.prepare(kind, body))


def test_n_choices_and_prompt_lists_are_indexed_prompt_major(completer):
    one = ask(completer, "completion", prompt="reverse 1 2 3", max_tokens=8)
    other = ask(completer, "completion", prompt="reverse 7 4", max_tokens=8)
    # greedy n=3: three identical choices, as OpenAI returns n choices
    three = ask(completer, "completion", prompt="reverse 1 2 3", max_tokens=8, n=3)
    assert [c["index"] for c in three["choices"]] == [0, 1, 2]
    assert {c["text"] for c in three["choices"]} == {one["choices"][0]["text"]}
    assert three["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"]
    assert three["usage"]["completion_tokens"] == 3 * one["usage"]["completion_tokens"]
    # a list of 2 prompts with n=2: index = prompt * n + choice
    four = ask(completer, "completion", prompt=["reverse 1 2 3", "reverse 7 4"], max_tokens=8, n=2)
    assert [c["index"] for c in four["choices"]] == [0, 1, 2, 3]
    assert [c["text"] for c in four["choices"]] == [one["choices"][0]["text"]] * 2 + [other["choices"][0]["text"]] * 2
    assert four["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"] + other["usage"]["prompt_tokens"]


def test_stop_cuts_the_text_before_the_stop_string(completer):
    # A seeded sample, long enough to hold a stop string: the same seed draws the same tokens up to the stop.
    for seed in range(50):
        sampled = {"max_tokens": 20, "temperature": 2.0, "seed": seed}
        full = ask(completer, "completion", prompt="reverse 1 2 3 4", **sampled)["choices"][0]["text"]
        if len(full) >= 6 and "\ufffd" not in full[:5]:
            break
    assert len(full) >= 6, full
    stop = full[3:5]
    cut = ask(completer, "completion", prompt="reverse 1 2 3 4", stop=[stop, "never-said"], **sampled)["choices"][0]
    assert cut == {"index": 0, "text": full[: full.find(stop)], "logprobs": None, "finish_reason": "stop"}
    chat = ask(completer, "chat", messages=[{"role": "user", "content": "reverse 1 2 3 4"}], stop=stop, **sampled)["choices"][0]
    assert chat["message"]["content"] == full[: full.find(stop)] and chat["finish_reason"] == "stop"


class FakeTokenizer:
    """Token ids are indexes into a list of texts."""

    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids, **_):
        return "".join(self.pieces[i] for i in ids)


def test_a_stream_holds_back_what_may_start_a_stop_string():
    tok = FakeTokenizer(["xa", "b", "c", "\ufffd"])
    c = Choice(["ab"])
    assert c.push(0, tok, eos_id=99, last=False) == "x"  # "a" may start "ab"
    assert c.push(1, tok, eos_id=99, last=False) == "" and (c.finish, c.text) == ("stop", "x")
    c = Choice(["ab"])
    assert [c.push(0, tok, 99, False), c.push(2, tok, 99, False), c.push(3, tok, 99, False), c.push(2, tok, 99, True)] == ["x", "ac", "", "\ufffdc"]
    assert (c.finish, c.text, c.generated) == ("length", "xac\ufffdc", 4)


def test_the_same_seed_gives_the_same_sample_and_another_seed_another(completer):
    body = {"prompt": "reverse 5 9 2", "max_tokens": 12, "temperature": 2.0, "n": 4}
    texts = lambda seed: [c["text"] for c in ask(completer, "completion", seed=seed, **body)["choices"]]  # noqa: E731
    assert texts(7) == texts(7)
    assert texts(7) != texts(8)
    assert len(set(texts(7))) > 1, "n sampled choices are drawn independently"
    nucleus = [c["text"] for c in ask(completer, "completion", seed=3, top_p=0.0, **{**body, "temperature": 1.0})["choices"]]
    assert set(nucleus) == {ask(completer, "completion", prompt=body["prompt"], max_tokens=12)["choices"][0]["text"]}, "top_p 0 keeps only the likeliest token"


def test_streamed_chunks_add_up_to_the_whole_answer(completer):
    for kind, ask_body in (("completion", {"prompt": ["reverse 1 2 3", "reverse 8 6"]}), ("chat", {"messages": [{"role": "user", "content": "reverse 1 2 3"}]})):
        whole = ask(completer, kind, max_tokens=10, n=2, **ask_body)
        chunks = list(completer.chunks(completer.prepare(kind, {"stream": True, "stream_options": {"include_usage": True}, "max_tokens": 10, "n": 2, **ask_body})))
        obj = "text_completion" if kind == "completion" else "chat.completion.chunk"
        assert all(ch["object"] == obj and ch["id"] == chunks[0]["id"] and "usage" in ch for ch in chunks)
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
        body = chunks[:-1]
        assert all(ch["usage"] is None and len(ch["choices"]) == 1 for ch in body)
        texts, finish = {}, {}
        for ch in body:
            c = ch["choices"][0]
            piece = c["text"] if kind == "completion" else c["delta"].get("content", "")
            texts[c["index"]] = texts.get(c["index"], "") + piece
            if c["finish_reason"]:
                assert c["index"] not in finish
                finish[c["index"]] = c["finish_reason"]
                if kind == "chat":
                    assert c["delta"] == {}
        for w in whole["choices"]:
            assert texts[w["index"]] == (w["text"] if kind == "completion" else w["message"]["content"])
            assert finish[w["index"]] == w["finish_reason"]
        if kind == "chat":  # each choice's first chunk carries the role
            firsts = [ch["choices"][0] for ch in body[:2]]
            assert [(c["index"], c["delta"]) for c in firsts] == [(0, {"role": "assistant", "content": ""}), (1, {"role": "assistant", "content": ""})]
    plain = list(completer.chunks(completer.prepare("completion", {"prompt": "reverse 1", "stream": True})))
    assert all("usage" not in ch for ch in plain)


def test_unsupported_parameters_are_refused_by_name(completer):
    cases = [
        ("completion", {"prompt": "x", "logprobs": 6}, "logprobs"),
        ("chat", {"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs"),
        ("chat", {"messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("completion", {"prompt": "x", "echo": True}, "echo"),
        ("completion", {"prompt": "x", "suffix": "y"}, "suffix"),
        ("completion", {"prompt": "x", "best_of": 3}, "best_of"),
        ("completion", {"prompt": "x", "logit_bias": {"5": 1}}, "logit_bias"),
        ("completion", {"prompt": "x", "frobnicate": 1}, "frobnicate"),
        ("completion", {"prompt": "x", "max_tokens": 65}, "max_tokens"),
        ("completion", {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ("completion", {"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
        ("chat", {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools"),
        ("chat", {"messages": [{"role": "user", "content": "x"}], "logprobs": 1}, "logprobs"),
        ("chat", {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}, "response_format"),
        ("chat", {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 0}, "max_completion_tokens"),
    ]
    for kind, body, param in cases:
        with pytest.raises(BadRequest) as e:
            completer.prepare(kind, body)
        assert e.value.status == 400 and e.value.param == param, (body, str(e.value))
    # values that ask for nothing are accepted, as OpenAI accepts them
    completer.prepare("chat", {"messages": [{"role": "user", "content": "x"}], "logprobs": False, "tools": [], "response_format": {"type": "text"}, "best_of": None})
    completer.prepare("completion", {"prompt": "x", "n": 2, "best_of": 2, "echo": False, "logprobs": None})


def test_a_cancelled_generation_stops_and_frees_the_model(completer):
    calls = []
    job = completer.prepare("completion", {"prompt": "reverse 1 2 3", "max_tokens": 20})
    with pytest.raises(Cancelled):
        completer.answer(job, alive=lambda: calls.append(1) or len(calls) < 2)
    assert len(calls) == 2 and sum(c.generated for c in job.choices) == 1
    # the batcher lets go of the model right after (the event reaches the caller a moment before it does)
    for _ in range(200):
        if not completer.lock.locked():
            break
        time.sleep(0.01)
    assert not completer.lock.locked()
    assert ask(completer, "completion", prompt="reverse 1 2 3", max_tokens=4)["choices"][0]["finish_reason"] in ("stop", "length")


def test_log_probabilities_are_the_models_own_per_returned_token(completer):
    whole = ask(completer, "completion", prompt="reverse 1 2 3", max_tokens=8, logprobs=2)["choices"][0]
    lp = whole["logprobs"]
    assert "".join(lp["tokens"]) == whole["text"] and len(lp["tokens"]) > 0
    assert lp["text_offset"] == [len("".join(lp["tokens"][:i])) for i in range(len(lp["tokens"]))]
    for token, value, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert value <= 0 and len(top) <= 2
        assert max(top.values()) == pytest.approx(value), "greedy takes the likeliest token"
    assert ask(completer, "completion", prompt="reverse 1 2 3", max_tokens=8)["choices"][0]["logprobs"] is None
    chat = ask(completer, "chat", messages=[{"role": "user", "content": "reverse 1 2 3"}], max_tokens=8, logprobs=True, top_logprobs=3)["choices"][0]
    content = chat["logprobs"]["content"]
    assert [c["token"] for c in content] == lp["tokens"] and [c["logprob"] for c in content] == pytest.approx(lp["token_logprobs"])
    assert all(len(c["top_logprobs"]) == 3 and c["bytes"] == list(c["token"].encode()) for c in content)
    # streamed: each chunk carries the log probabilities of the tokens its text starts
    chunks = list(completer.chunks(completer.prepare("chat", {"messages": [{"role": "user", "content": "reverse 1 2 3"}], "max_tokens": 8,
                                                                 "logprobs": True, "top_logprobs": 3, "stream": True})))
    streamed = [c for ch in chunks for c in ((ch["choices"][0]["logprobs"] or {}).get("content") or [])]
    assert streamed == content
    # cut at a stop string: only the tokens whose text starts before the cut (a seeded sample, long enough)
    for seed in range(50):
        sampled = {"prompt": "reverse 1 2 3 4", "max_tokens": 20, "temperature": 2.0, "seed": seed, "logprobs": 0}
        full = ask(completer, "completion", **sampled)["choices"][0]
        if len(full["text"]) >= 6 and "\ufffd" not in full["text"]:
            break
    stop = full["text"][3:5]
    cut = ask(completer, "completion", stop=stop, **sampled)["choices"][0]
    assert cut["text"] == full["text"][: full["text"].find(stop)]
    offsets = full["logprobs"]["text_offset"]
    assert cut["logprobs"]["tokens"] == [t for t, o in zip(full["logprobs"]["tokens"], offsets) if o < len(cut["text"])]
    assert cut["logprobs"]["top_logprobs"] == [{}] * len(cut["logprobs"]["tokens"])


# --- dynamic batching ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    """The real base model (SmolLM2-135M-Instruct, with its chat template): the demo model answers in one token,
    too short to show rows finishing apart. Twice: one request at a time, and batching with a wait long enough
    (300 ms) for requests started together to land in one batch. One model object: the tests never overlap."""
    model, tokenizer = load_pretrained(os.path.join(smollm2_dir, "model"), torch.device("cpu"))
    return (Completer(model, tokenizer, "demo", max_tokens_limit=64, max_batch=1),
            Completer(model, tokenizer, "demo", max_tokens_limit=64, max_batch=8, batch_wait_ms=300))


def together(completer, bodies, alive=None):
    """The answers to requests sent at once from threads (an exception where one raised), in order."""
    out = [None] * len(bodies)

    def one(i, body):
        kind = "chat" if "messages" in body else "completion"
        try:
            job = completer.prepare(kind, body)
            out[i] = completer.answer(job, alive[i] if alive else (lambda: True))
        except Exception as e:  # noqa: BLE001 - handed back to the test
            out[i] = e

    threads = [threading.Thread(target=one, args=(i, b)) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


PROMPTS = ["What is the capital of France?", "Name a fruit.", "Count from one to five, in words.", "Hi", "Why is the sky blue?"]


def test_greedy_answers_are_identical_batched_and_alone(smollm2):
    completer, batching = smollm2
    alone = [ask(completer, "completion", prompt=p, max_tokens=12, logprobs=1)["choices"][0] for p in PROMPTS]
    before = sum(v for k, v in batching.batch_sizes.items() if k > 1)
    batched = together(batching, [{"prompt": p, "max_tokens": 12, "logprobs": 1} for p in PROMPTS])
    assert sum(v for k, v in batching.batch_sizes.items() if k > 1) > before  # they did share a batch
    for a, b in zip(alone, batched):
        assert b["choices"][0]["text"] == a["text"] and b["choices"][0]["finish_reason"] == a["finish_reason"]
        assert b["choices"][0]["logprobs"]["tokens"] == a["logprobs"]["tokens"]
        assert b["choices"][0]["logprobs"]["token_logprobs"] == pytest.approx(a["logprobs"]["token_logprobs"], abs=1e-3)


def test_each_request_in_a_batch_keeps_its_own_limits_stops_and_seed(smollm2):
    completer, batching = smollm2
    # the prompt the model answers longest alone, so that a 2-token limit and a stop string both cut it
    alone = {p: ask(completer, "completion", prompt=p, max_tokens=12) for p in PROMPTS}
    longest = max(PROMPTS, key=lambda p: alone[p]["usage"]["completion_tokens"])
    first = alone[longest]["choices"][0]["text"]
    assert alone[longest]["usage"]["completion_tokens"] >= 3 and len(first) >= 2
    stop = first[len(first) // 2 :][:2]
    seeded = {"prompt": PROMPTS[0], "max_tokens": 12, "temperature": 1.5, "seed": 7}
    seeded_alone = ask(completer, "completion", **seeded)["choices"][0]["text"]
    short, stopped, sampled, seeded_batched, chat = together(batching, [
        {"prompt": longest, "max_tokens": 2},
        {"prompt": longest, "max_tokens": 12, "stop": stop},
        {"prompt": PROMPTS[1], "max_tokens": 12, "temperature": 1.5, "n": 3},
        seeded,
        {"messages": [{"role": "user", "content": longest}], "max_tokens": 12},
    ])
    assert short["usage"]["completion_tokens"] == 2 and short["choices"][0]["finish_reason"] == "length"
    assert stopped["choices"][0] == {**stopped["choices"][0], "text": first[: first.index(stop)], "finish_reason": "stop"}
    assert len(sampled["choices"]) == 3
    assert seeded_batched["choices"][0]["text"] == seeded_alone  # a seeded sample is decoded alone: the same answer
    assert chat["choices"][0]["message"]["content"] == first


def test_a_client_that_leaves_a_batch_stops_only_its_own_rows(smollm2):
    completer, batching = smollm2
    want = ask(completer, "completion", prompt=PROMPTS[0], max_tokens=12)["choices"][0]["text"]
    calls = []
    gone, kept = together(batching, [{"prompt": PROMPTS[2], "max_tokens": 20}, {"prompt": PROMPTS[0], "max_tokens": 12}],
                          alive=[lambda: calls.append(1) or len(calls) < 3, lambda: True])
    assert isinstance(gone, Cancelled) and len(calls) == 3
    assert kept["choices"][0]["text"] == want


def test_max_batch_one_serves_one_request_at_a_time(exported):
    model, tokenizer = load_pretrained(exported["model_tar"], torch.device("cpu"))
    single = Completer(model, tokenizer, "demo", max_tokens_limit=64, max_batch=1, batch_wait_ms=300)
    answers = together(single, [{"prompt": p, "max_tokens": 4} for p in PROMPTS[:3]])
    assert all(isinstance(a, dict) for a in answers) and single.batch_sizes == {1: 3}
