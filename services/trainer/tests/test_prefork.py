"""The pre-started trainer (prefork.py): a forked job behaves as a plain `python -m tempered_trainer` process
(same events, exit code, stdio and working directory), starts at once, dies with its client, and one job's
crash leaves the server and the next job untouched."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

TRAINER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": TRAINER_DIR, "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    sock = str(tmp_path_factory.mktemp("prefork") / "trainer.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tempered_trainer.prefork", "serve", sock],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True,
    )
    ready = json.loads(proc.stdout.readline())
    assert ready["event"] == "ready" and ready["pid"] == proc.pid
    assert os.stat(sock).st_mode & 0o777 == 0o600, "only the owner may start jobs"
    yield {"sock": sock, "proc": proc}
    proc.stdin.close()  # the worker going away: the server exits on end of stdin
    assert proc.wait(timeout=10) == 0


def _client(server, args, cwd, **env):
    return subprocess.Popen(
        [sys.executable, "-m", "tempered_trainer.prefork", "run", server["sock"], *args],
        cwd=cwd, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_a_forked_job_gives_the_same_events_and_exit_code_as_a_plain_process(server, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"input": "missing.jsonl", "output_dir": "out"}))
    args = ["tokenize", "--config", "config.json"]
    started = time.monotonic()
    forked = _client(server, args, tmp_path)
    out, _ = forked.communicate(timeout=30)
    took = time.monotonic() - started
    plain = subprocess.run([sys.executable, "-m", "tempered_trainer", *args], cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert forked.returncode == plain.returncode == 2  # bad input: not retryable
    events = [json.loads(line) for line in out.splitlines()]
    expected = [json.loads(line) for line in plain.stdout.splitlines()]
    assert [(e["event"], e["reason"]) for e in events] == [(e["event"], e["reason"]) for e in expected]
    assert "missing.jsonl" in events[-1]["reason"], "the relative path was read in the client's directory"
    assert took < 2.0, f"a forked job took {took:.2f}s to start and finish"


def test_a_bad_command_line_is_refused_on_the_clients_stderr(server, tmp_path):
    job = _client(server, ["no-such-command", "--config", "x.json"], tmp_path)
    out, err = job.communicate(timeout=30)
    assert job.returncode == 2 and err.startswith("usage: python -m tempered_trainer")
    assert json.loads(out.splitlines()[-1])["event"] == "error"


def test_killing_the_client_kills_its_job_and_the_server_serves_on(server, tmp_path):
    fifo = tmp_path / "records.jsonl"
    os.mkfifo(fifo)  # tokenize blocks opening it: a job that runs until it is killed
    (tmp_path / "config.json").write_text(json.dumps({"input": str(fifo), "output_dir": str(tmp_path / "out")}))
    job = _client(server, ["tokenize", "--config", "config.json"], tmp_path)
    deadline = time.monotonic() + 20
    while not _children(server["proc"].pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    [child] = _children(server["proc"].pid)
    # Just forked, it may still be becoming the job (entering the client's directory).
    while os.readlink(f"/proc/{child}/cwd") != str(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.readlink(f"/proc/{child}/cwd") == str(tmp_path)
    assert os.getpgid(child) == child, "the job leads its own process group"
    os.killpg(job.pid, signal.SIGKILL)  # what the activity does on cancel or when the watchdog fires
    job.wait(timeout=10)
    while _children(server["proc"].pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _children(server["proc"].pid) == [], "the job died with its client"
    assert server["proc"].poll() is None, "the server lives on"

    # A job that crashes (killed by a signal) is reported as such; the next job runs normally.
    job = _client(server, ["tokenize", "--config", "config.json"], tmp_path)
    while not _children(server["proc"].pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(_children(server["proc"].pid)[0], signal.SIGKILL)
    assert job.wait(timeout=10) == 128 + signal.SIGKILL
    (tmp_path / "config.json").write_text(json.dumps({"input": "missing.jsonl", "output_dir": "out"}))
    assert _client(server, ["tokenize", "--config", "config.json"], tmp_path).wait(timeout=30) == 2
