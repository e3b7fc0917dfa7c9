"""sft checkpoints: what a checkpoint file holds (`Checkpoint`), writing one atomically, reading one back, and
turning one into a model and tokenizer for eval and export (CONTRACT.md, `sft`: checkpoints).

A checkpoint holds everything the rest of a run depends on, so that resuming from it is the same run: weights,
optimizer and scheduler state, RNG states and the position in the data order.
"""

import copy
import os
import random
from typing import NotRequired, Optional, TypedDict

import numpy as np
import torch

from .architecture import ModelArgs, build_model
from .events import ConfigError
from .lora import apply_lora, load_adapter_state
from .model_files import load_base_weights
from .template import ChatFormat
from .tokenizer import read_tokenizer_json, tokenizer_from_json


class DataPosition(TypedDict):
    """Where the sft sampler stands: an epoch and an index into that epoch's seeded permutation."""

    epoch: int
    index: int


class RngState(TypedDict):
    python: tuple
    numpy: tuple
    torch: torch.Tensor
    cuda: Optional[list]  # one state per visible GPU; None where there was none


class Checkpoint(TypedDict):
    """One sft checkpoint file: a `torch.save`d dict of exactly these keys.

    The NotRequired keys were added after the first checkpoints were written; readers take their absence as
    the old meaning (no LoRA, no stored tokenizer, the plain chat format).
    """

    # All weights; with LoRA the frozen base of a model built from scratch (its step-0 weights); None for LoRA
    # over a `base_model`, which is stored once per run and named here by `base_sha256` only.
    model: Optional[dict]
    base_sha256: NotRequired[Optional[str]]  # sha256 of the base's model.safetensors (LoRA over a base_model)
    adapter: NotRequired[Optional[dict]]  # the LoRA weights under PEFT's key names; None without LoRA
    lora: NotRequired[Optional[dict]]  # lora.lora_settings: the config's `lora` with defaults filled in
    chat_format: NotRequired[dict]  # ChatFormat.as_dict()
    optimizer: dict
    scheduler: dict
    step: int
    rng: RngState
    data_position: DataPosition
    model_args: ModelArgs
    tokenizer_json: NotRequired[str]  # the tokenizer's text, so eval and export need no tokenizer file
    config: dict  # the sft config without this attempt's local paths (sft.LOCAL_PATHS)
    initial_loss: Optional[float]  # the first step's loss (None at step 0)
    loss: Optional[float]  # the latest step's loss


def rng_state() -> RngState:
    return RngState(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    )


def set_rng_state(state: RngState) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str, ckpt: Checkpoint) -> None:
    """torch.save to a temp name, fsync, rename: a crash leaves the old file or the new one, never half."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # including SIGTERM mid-write: leave no stray temp file behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path: str) -> Checkpoint:
    if not os.path.isfile(path):
        raise ConfigError(f"checkpoint not found: {path}")
    # weights_only=False: our own files carry python/numpy RNG states, which the safe unpickler refuses.
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict):
        raise ConfigError(f"{path} is not a tempered sft checkpoint")
    missing = sorted(Checkpoint.__required_keys__ - set(ckpt))
    if missing:
        raise ConfigError(f"{path} is not a tempered sft checkpoint: it lacks {', '.join(missing)}")
    return ckpt


_base_cache: dict = {}  # the last base model a LoRA checkpoint was loaded onto: {path, model, digest}


def load_checkpoint_model(path: str, device: torch.device, merge: bool = True, base_model: str = None):
    """(model, checkpoint) from an sft checkpoint file.

    A LoRA checkpoint holds the adapter (`adapter`) and either the frozen base weights (`model`, for a model
    built from scratch) or, for a LoRA run over a `base_model`, only that base's weights digest (`base_sha256`):
    the base is stored once per run, not in every checkpoint, and `base_model` must then be given. With `merge`
    the adapter is folded into the base and a plain model comes back, otherwise the PEFT model.
    """
    ckpt = load_checkpoint(path)
    if ckpt["model"] is None:
        if not base_model:
            raise ConfigError(f"field 'base_model' is required: checkpoint {path} holds a LoRA adapter whose base "
                              f"(weights {str(ckpt.get('base_sha256'))[:12]}) is stored once per run, not in the checkpoint")
        if _base_cache.get("path") != base_model:
            # Loaded (unpacked, digested) once per process: eval scores every checkpoint of a run on the same base.
            base, _, digest = load_base_weights(base_model)
            _base_cache.update(path=base_model, model=base, digest=digest)
        if _base_cache["digest"] != ckpt.get("base_sha256"):
            raise ConfigError(f"field 'base_model' ({base_model}) has weights {_base_cache['digest'][:12]}, but the checkpoint's "
                              f"adapter was trained on {str(ckpt.get('base_sha256'))[:12]}; pass the base the run started from")
        # A copy: merging an adapter changes the weights it is merged into.
        model = copy.deepcopy(_base_cache["model"])
    else:
        model = build_model(ckpt["model_args"])
        model.load_state_dict(ckpt["model"])
    if ckpt.get("lora"):
        model = apply_lora(model, ckpt["lora"])
        load_adapter_state(model, ckpt["adapter"])
        if merge:
            model = model.merge_and_unload()
    return model.to(device).eval(), ckpt


def checkpoint_format(ckpt: Checkpoint) -> ChatFormat:
    """The chat format a checkpoint was trained with (the plain one for checkpoints older than the field)."""
    return ChatFormat.from_dict(ckpt.get("chat_format"))


def checkpoint_tokenizer(ckpt: Checkpoint, tokenizer_path, where: str):
    """The tokenizer for a checkpoint: the given file, else the one the checkpoint carries (sft stores it); its
    chat format is the checkpoint's."""
    if tokenizer_path:
        path = os.path.join(tokenizer_path, "tokenizer.json") if os.path.isdir(tokenizer_path) else tokenizer_path
        return tokenizer_from_json(read_tokenizer_json(path), path, checkpoint_format(ckpt))
    if ckpt.get("tokenizer_json"):
        return tokenizer_from_json(ckpt["tokenizer_json"], f"the tokenizer stored in {where}", checkpoint_format(ckpt))
    raise ConfigError(f"field 'tokenizer' is required: checkpoint {where} carries no tokenizer")
