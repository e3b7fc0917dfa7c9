import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def http(method, url, body=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


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
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        last = json.loads(proc.stdout.read().strip().splitlines()[-1])
        assert last["event"] == "finished"
    finally:
        if proc.poll() is None:
            proc.kill()
