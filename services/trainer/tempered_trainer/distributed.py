"""Data-parallel training across the processes of torch's own launcher (`python -m torch.distributed.run`, i.e.
torchrun): which process this is, its device, the process group, and the few collectives sft needs.

Launched plainly (no WORLD_SIZE in the environment, or 1) a command is one process and nothing here talks to
anyone. Under torchrun each process joins the group torchrun's rendezvous set up (gloo on CPU, nccl on CUDA, one
GPU per local rank). Only rank 0 speaks the trainer contract: its events go to stdout, the other ranks' to stderr
(the activity reads one stream of events, and every rank computes the same numbers anyway).
"""

import ctypes
import dataclasses
import os
import signal
import time

import torch
import torch.distributed as dist

from . import events
from .devices import resolve_device
from .events import ConfigError

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PEER_REPORT_SECONDS = 30


@dataclasses.dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _die_with_launcher() -> None:
    """Ask Linux to SIGKILL this rank when its launcher dies. torchrun starts every rank in a session of its own,
    so killing the launcher's process group (the activity's cancel and hang watchdog) would otherwise leave the
    ranks running, holding their GPUs and blocking in collectives forever."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the activity's process-tree kill still reaches the ranks
        return
    if os.getppid() == 1:  # the launcher died before prctl took effect
        os._exit(1)


def init(device_name: str) -> tuple:
    """(World, torch.device) of this process, joining torchrun's process group when there is one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), resolve_device(device_name)
    world = World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    _die_with_launcher()
    if not world.main:
        events.events_to_stderr()
    device = resolve_device(device_name)
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"{torch.cuda.device_count()} GPUs are visible to local rank {world.local_rank} of {size} processes; "
                              f"field 'gpus' asks for more GPUs than this worker gave the job")
        torch.cuda.set_device(world.local_rank)
        device = torch.device("cuda", world.local_rank)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None)
    return world, device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list, device: torch.device) -> list:
    """The element-wise sum of `values` (floats) over every rank, in float64 so that counts stay exact."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def rank_slice(indices: list, world: World) -> list:
    """This rank's contiguous share of a global batch whose size is a multiple of the world size."""
    per = len(indices) // world.size
    return indices[world.rank * per : (world.rank + 1) * per]


def check_batch(batch_size: int, world: World) -> None:
    if batch_size % world.size:
        raise ConfigError(f"sft config: field 'batch_size' ({batch_size}) must be a multiple of the number of processes ({world.size}): "
                          f"it is the global batch, split evenly over them")


def let_rank_0_report(world: World) -> None:
    """On a refusal every rank reaches alike (a bad config), let rank 0 be the one to fail first. If another rank
    exited first, torchrun would stop rank 0 with SIGTERM before it had said why, and the activity would read a
    retryable "interrupted" instead of the refusal. So the other ranks wait (bounded, in case only they failed);
    torchrun stops them as soon as rank 0 has exited with its error event."""
    if world.distributed and not world.main:
        time.sleep(PEER_REPORT_SECONDS)
