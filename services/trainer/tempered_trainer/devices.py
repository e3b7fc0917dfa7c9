"""Where a torch-side command computes: torch's thread count, the device a config's `device` names, and the
precision on it (CONTRACT.md: `device`)."""

import os

import torch

from .events import ConfigError


def setup_threads() -> None:
    """TEMPERED_NUM_THREADS pins torch's intra-op threads; by default torch uses one per physical core."""
    n = os.environ.get("TEMPERED_NUM_THREADS")
    if n:
        torch.set_num_threads(int(n))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        # Not retryable: GPU work is routed to GPU workers, so a worker without one that got it would fail the
        # same way on every attempt; the activity must surface the mismatch rather than burn retries on it.
        raise ConfigError("field 'device' is \"cuda\" but no CUDA device is visible to this worker "
                          "(torch.cuda.is_available() is false); use \"auto\" or \"cpu\", or run on a GPU worker")
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, plain fp32 on CPU (CONTRACT.md: `device`)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)
