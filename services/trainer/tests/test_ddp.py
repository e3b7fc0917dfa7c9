"""Data-parallel sft under torch's own launcher (torchrun, two CPU processes, gloo) against one process at the
same global batch: the loss curves match within LOSS_TOLERANCE, rank 0 alone speaks and checkpoints, resuming a
two-process run from its checkpoint is bit-exact, and killing one rank mid-run fails the job as retryable while
the rerun from the last checkpoint ends with the same weights as the run that was never killed.

Tiny model, 48 steps, one thread per rank: each launch costs about three torch imports.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import finished, run_command, sft_config

TRAINER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, EVERY = 48, 8
# Two processes sum the same per-token losses in another order (each rank's share, then gloo's all-reduce), so
# the curves agree to float32 rounding, not bit for bit. Measured on CPU: at most ~1e-6 over the 48 steps; the
# bound leaves room for other CPUs' kernels while a wrong share, scale or sampler would be off by 1e-2 or more.
LOSS_TOLERANCE = 1e-4


def torchrun(config: dict, workdir, nproc: int = 2, on_event=None) -> tuple:
    """(exit code, stdout events, stderr) of `python -m torch.distributed.run --standalone --nproc-per-node N -m
    tempered_trainer sft`, as the activity launches it; `on_event(event, launcher)` sees each event as it comes."""
    path = os.path.join(str(workdir), f"sft-config-{len(os.listdir(str(workdir)))}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    env = {**os.environ, "PYTHONPATH": TRAINER_DIR, "OMP_NUM_THREADS": "1", "TEMPERED_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                             "-m", "tempered_trainer", "sft", "--config", path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(workdir), start_new_session=True)
    events = []
    try:
        for line in proc.stdout:
            event = json.loads(line)  # every stdout line must be an event: rank 1 and torchrun keep to stderr
            events.append(event)
            if on_event:
                on_event(event, proc)
        stderr = proc.stderr.read()
        return proc.wait(timeout=120), events, stderr
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def losses(events) -> dict:
    return {e["step"]: e["loss"] for e in events if e["event"] == "step"}


def ddp_config(demo, out, **overrides) -> dict:
    return sft_config(demo, out, steps=STEPS, checkpoint_every=EVERY, batch_size=8, warmup_steps=4, **overrides)


@pytest.fixture(scope="module")
def runs(demo, tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    os.environ["TEMPERED_NUM_THREADS"] = "1"  # the in-process reference too: same kernels as the ranks
    try:
        rc, single = run_command("sft", ddp_config(demo, d / "one"), d)
    finally:
        del os.environ["TEMPERED_NUM_THREADS"]
    assert rc == 0, single[-1]
    rc, double, stderr = torchrun(ddp_config(demo, d / "two"), d)
    assert rc == 0, stderr[-3000:]
    return {"dir": d, "single": single, "double": double}


def test_two_processes_match_one_at_the_same_global_batch(runs):
    one, two = runs["single"], runs["double"]
    assert two[0]["event"] == "started" and two[0]["processes"] == 2 and one[0]["processes"] == 1
    # Rank 0 alone speaks: one started, one finished, one event per step and per checkpoint.
    assert [e["event"] for e in two].count("started") == 1 and [e["event"] for e in two].count("finished") == 1
    assert list(losses(two)) == list(range(1, STEPS + 1))
    assert [e["step"] for e in two if e["event"] == "checkpoint"] == list(range(0, STEPS + 1, EVERY))
    diff = max(abs(losses(one)[s] - losses(two)[s]) for s in losses(one))
    print(f"loss parity, 1 vs 2 processes over {STEPS} steps: max abs difference {diff:.3g}")
    assert diff < LOSS_TOLERANCE, diff
    assert finished(two)["final_loss"] < finished(two)["initial_loss"] * 0.7  # it learned, as one process does

    a = torch.load(finished(one)["checkpoints"][-1], weights_only=False)
    b = torch.load(finished(two)["checkpoints"][-1], weights_only=False)
    # The same format, the same data position (the ranks shared one sampler's global batches), nearby weights.
    assert set(a) == set(b) and a["model_args"] == b["model_args"] and a["config"] == b["config"]
    assert a["data_position"] == b["data_position"] and b["step"] == STEPS
    assert set(a["model"]) == set(b["model"])  # the plain module's names, not DDP's `module.` ones
    weight_diff = max(float((a["model"][k] - b["model"][k]).abs().max()) for k in a["model"])
    print(f"weights after {STEPS} steps: max abs difference {weight_diff:.3g}")
    assert weight_diff < 1e-3
    names = sorted(os.listdir(os.path.dirname(finished(two)["checkpoints"][0])))
    assert names == [f"step-{s:08d}.pt" for s in range(0, STEPS + 1, EVERY)]  # one writer, no stray temp file


def test_two_process_resume_is_exact(runs, demo):
    d = runs["dir"]
    half = os.path.join(d, "two", "checkpoints", f"step-{STEPS // 2:08d}.pt")
    rc, resumed, stderr = torchrun(ddp_config(demo, d / "resumed", resume_from=half), d)
    assert rc == 0, stderr[-3000:]
    assert resumed[0]["step"] == STEPS // 2
    straight = losses(runs["double"])
    assert losses(resumed) == {s: straight[s] for s in range(STEPS // 2 + 1, STEPS + 1)}
    a = torch.load(finished(runs["double"])["checkpoints"][-1], weights_only=False)
    b = torch.load(finished(resumed)["checkpoints"][-1], weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["data_position"] == b["data_position"]


def rank_pids(launcher_pid: int) -> dict:
    """{rank: pid} of torchrun's workers: its children, each with RANK in its environment."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != launcher_pid:
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
            out[int(env[b"RANK"])] = int(pid)
        except (OSError, KeyError, ValueError):
            continue
    return out


def test_killing_one_rank_fails_the_job_as_retryable_and_the_rerun_resumes(runs, demo):
    d = runs["dir"]
    killed = {}

    def kill_rank_1(event, launcher):
        # After the first checkpoint past step 0, with 40 steps still to go.
        if event["event"] == "checkpoint" and event["step"] == EVERY and not killed:
            pids = rank_pids(launcher.pid)
            killed.update(pids)
            os.kill(pids[1], signal.SIGKILL)

    rc, events, stderr = torchrun(ddp_config(demo, d / "killed"), d, on_event=kill_rank_1)
    assert sorted(killed) == [0, 1]
    assert rc != 0
    last = events[-1]
    assert last["event"] == "error" and last["retryable"] is True, last
    assert max(losses(events)) < STEPS
    time.sleep(0.5)
    assert not os.path.exists(f"/proc/{killed[0]}"), "rank 0 outlived the failed job"
    ckpts = sorted(os.listdir(d / "killed" / "checkpoints"))
    assert ckpts and ".tmp" not in "".join(ckpts)
    latest = os.path.join(d, "killed", "checkpoints", ckpts[-1])
    at = torch.load(latest, weights_only=False)["step"]
    assert EVERY <= at < STEPS

    rc, rerun, stderr = torchrun(ddp_config(demo, d / "rerun", resume_from=latest), d)
    assert rc == 0, stderr[-3000:]
    assert rerun[0]["step"] == at
    straight = losses(runs["double"])
    assert losses(rerun) == {s: straight[s] for s in range(at + 1, STEPS + 1)}
    a = torch.load(finished(runs["double"])["checkpoints"][-1], weights_only=False)
    b = torch.load(finished(rerun)["checkpoints"][-1], weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_a_batch_the_processes_cannot_share_is_refused_naming_the_field(demo, tmp_path):
    rc, events, _ = torchrun(sft_config(demo, tmp_path / "out", steps=2, batch_size=7), tmp_path)
    assert rc != 0
    assert events[-1]["event"] == "error" and events[-1]["retryable"] is False and "'batch_size' (7)" in events[-1]["reason"]
