"""`sft`: supervised fine-tuning on an encoded shard, with exact checkpoint/resume.

The model is a tiny GPT-2 built from `model`, or the model in `base_model` (a Hugging Face directory or
model.tar, which also brings its tokenizer). With `lora` only a LoRA adapter trains and the base stays frozen.

The loop in brief (nanoGPT-style): batches of records drawn from a seeded per-epoch permutation, right-padded
to the longest record (at most context_length), loss only on response tokens, AdamW with linear warmup and
cosine decay, a checkpoint at step 0, every `checkpoint_every` steps and at the end.

A checkpoint (`checkpoint.Checkpoint`) holds everything the rest of the run depends on (weights, optimizer and
scheduler state, RNG states, the position in the data order), so resuming from it on CPU gives bit-identical
results. With LoRA, `adapter` holds the trained weights; the frozen base is in `model` for a model built from
scratch, and for a `base_model` only named by its weights digest (a 7B base must not be copied into every
checkpoint: resume, eval and export are given the base again). Every checkpoint also carries the tokenizer and
the chat format.

`gradient_accumulation` micro-batches make one optimizer step (the loss is the mean over all their response
tokens, as one big batch would have it); `gradient_checkpointing` recomputes activations in the backward pass;
`max_seq_length` cuts records shorter than the model's context. The config is `SFTConfig` below.

Under torch's launcher (torchrun, `distributed.py`) the same loop is data-parallel (DDP): every process draws the
same global batch of `batch_size` records from the same seeded permutation and trains on its contiguous share;
the loss is divided by the global count of response tokens, so the averaged gradient, the logged loss and the
data position are those of one process training on the whole batch. Rank 0 alone emits events and writes
checkpoints, in the same format; a checkpoint resumes exactly under any number of processes that divides the batch.
"""

import contextlib
import dataclasses
import math
import os
import time
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .architecture import build_model, count_params, model_args_from, model_args_from_config
from .checkpoint import Checkpoint, DataPosition, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import Device, ModelShape, as_dict, check_model_source, from_dict, require
from . import distributed
from .devices import autocast, setup_threads
from .events import ConfigError, emit, log
from .lora import LoraSpec, adapter_state, apply_lora, check_lora, load_adapter_state, lora_settings
from .model_files import load_base_weights, save_adapter_dir, save_model_dir, unpacked_model, write_model_tar
from .shard import Shard, read_shard
from .template import PLAIN
from .tokenizer import chat_format_of, read_tokenizer_json, tokenizer_from_json

MIN_LR_RATIO = 0.1  # cosine decays to 10% of the peak learning rate, as in nanoGPT


@dataclasses.dataclass
class SFTConfig:
    train_shard: str
    output_dir: str
    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    checkpoint_every: int
    seed: int
    # Exactly one of `model` (a tiny GPT-2 built from scratch) and `base_model` (a model directory or model.tar).
    model: Optional[ModelShape] = None
    base_model: Optional[str] = None
    tokenizer: Optional[str] = None  # required with `model`; with `base_model` optional and must match its own
    lora: Optional[LoraSpec] = None  # train a LoRA adapter instead of all weights
    device: Device = "auto"
    resume_from: Optional[str] = None
    log_every: int = 1
    gradient_accumulation: int = 1  # micro-batches of batch_size per optimizer step
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, more time
    max_seq_length: Optional[int] = None  # records are cut to this many tokens (default: the model's context)

    def __post_init__(self):
        need = lambda ok, field, msg: require(ok, "sft", field, msg)  # noqa: E731
        check_model_source("sft", self.model, self.base_model, self.tokenizer)
        if self.lora is not None:
            check_lora("sft", self.lora)
        need(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        need(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        need(0 < self.learning_rate <= 1, "learning_rate", f"must be in (0, 1], got {self.learning_rate}")
        need(0 <= self.warmup_steps, "warmup_steps", f"must be at least 0, got {self.warmup_steps}")
        need(self.weight_decay >= 0, "weight_decay", f"must be at least 0, got {self.weight_decay}")
        need(self.checkpoint_every >= 1, "checkpoint_every", f"must be at least 1, got {self.checkpoint_every}")
        need(self.seed >= 0, "seed", f"must be at least 0, got {self.seed}")
        need(self.log_every >= 1, "log_every", f"must be at least 1, got {self.log_every}")
        need(self.gradient_accumulation >= 1, "gradient_accumulation", f"must be at least 1, got {self.gradient_accumulation}")
        need(self.max_seq_length is None or self.max_seq_length >= 2, "max_seq_length", f"must be at least 2, got {self.max_seq_length}")
        for field in ("train_shard", "output_dir"):
            need(bool(getattr(self, field)), field, "must be a non-empty path")


class Sampler:
    """Batches of record indices from a per-epoch permutation seeded by (seed, epoch).

    The position is just (epoch, index into that epoch's permutation), so it can be saved and restored
    without storing any permutation.
    """

    def __init__(self, n: int, seed: int, epoch: int = 0, index: int = 0):
        self.n, self.seed, self.epoch, self.index = n, seed, epoch, index
        self._perm = self._permutation(epoch)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def next_batch(self, batch_size: int) -> list:
        out = []
        while len(out) < batch_size:
            if self.index == self.n:
                self.epoch, self.index = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
            take = min(batch_size - len(out), self.n - self.index)
            out.extend(int(i) for i in self._perm[self.index : self.index + take])
            self.index += take
        return out

    def position(self) -> DataPosition:
        return DataPosition(epoch=self.epoch, index=self.index)


def make_batch(shard: Shard, indices, context_length: int, pad_id: int):
    """(input_ids, labels, n_tokens): records truncated to context_length and right-padded to the longest.

    Labels are the input ids where the loss mask is 1 and -100 elsewhere (prompt and padding). No attention
    mask is needed: padding sits only on the right and attention is causal, so real tokens never see it.
    """
    rows = [shard.record(i) for i in indices]
    length = min(context_length, max(len(t) for t, _ in rows))
    ids = np.full((len(rows), length), pad_id, dtype=np.int64)
    labels = np.full((len(rows), length), -100, dtype=np.int64)
    n_tokens = 0
    for r, (tok, mask) in enumerate(rows):
        tok, mask = tok[:length], mask[:length]
        ids[r, : len(tok)] = tok
        labels[r, : len(tok)] = np.where(mask == 1, tok, -100)
        n_tokens += len(tok)
    return torch.from_numpy(ids), torch.from_numpy(labels), n_tokens


def response_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"):
    """Next-token cross entropy over positions whose *target* is a response token (label != -100)."""
    logits, targets = logits[:, :-1, :].float(), labels[:, 1:]
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100, reduction="sum")
    count = int((targets != -100).sum())
    if reduction == "sum":
        return total, count
    # A batch whose responses were all truncated away contributes zero loss rather than NaN.
    return total / max(count, 1)


def supports_logits_to_keep(model) -> bool:
    """Whether the causal LM (under any PEFT wrapper) takes `logits_to_keep`, as transformers' GPT-2, Llama and
    most current architectures do."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def model_loss(model, ids: torch.Tensor, labels: torch.Tensor, sparse_head: bool):
    """(sum of next-token cross entropy over response targets, their count), as `response_loss` with
    reduction "sum" computes it from full logits.

    With `sparse_head`, the LM head runs only at the positions that predict a response token (a boolean
    `logits_to_keep`): the head is a vocabulary-sized matmul per position (with SmolLM2's 49k vocabulary a fifth
    of the forward pass), and a fine-tuning record's answer is usually a few tokens of a long prompt."""
    if not sparse_head:
        return response_loss(model(input_ids=ids).logits, labels, reduction="sum")
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    logits = model(input_ids=ids, logits_to_keep=keep).logits.float()
    targets = labels[:, 1:][keep[:, :-1]]
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets, reduction="sum")
    return total, int(targets.numel())


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Multiplier of the peak learning rate for update number `step` (0-based): linear warmup, cosine decay."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model, cfg: SFTConfig):
    # As in nanoGPT: decay matrices, not biases, LayerNorm gains or position tables of rank 1. Frozen weights
    # (a LoRA run's base) are left out, so the optimizer state is the adapter's alone.
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.95), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps))
    return opt, sched


# Config fields that name files of one attempt's scratch directory.
LOCAL_PATHS = ("train_shard", "tokenizer", "output_dir", "resume_from", "base_model")


def load_model(cfg: SFTConfig):
    """(model, tokenizer, tokenizer.json text, model_args, base weights digest or None) before any LoRA: built from
    `model` or loaded from `base_model` (whose tokenizer brings the model's chat format)."""
    if cfg.base_model is None:
        tokenizer_json = read_tokenizer_json(cfg.tokenizer)
        tokenizer = tokenizer_from_json(tokenizer_json, f"tokenizer {cfg.tokenizer}", PLAIN)
        model_args = model_args_from(**cfg.model, vocab_size=len(tokenizer), eos_id=tokenizer.eos_token_id)
        return build_model(model_args), tokenizer, tokenizer_json, model_args, None
    model, tokenizer, digest = load_base_weights(cfg.base_model)
    with unpacked_model(cfg.base_model) as src:
        tokenizer_json = read_tokenizer_json(src)
    if cfg.tokenizer:
        # The base was trained with its own tokenizer; a shard encoded with any other would be gibberish to it.
        given = tokenizer_from_json(read_tokenizer_json(cfg.tokenizer), f"tokenizer {cfg.tokenizer}")
        if given.get_vocab() != tokenizer.get_vocab():
            raise ConfigError(f"sft config: field 'tokenizer' ({cfg.tokenizer}) differs from base_model's own tokenizer.json; leave it out or pass the same one")
    if len(tokenizer) > model.config.vocab_size:
        raise ConfigError(f"sft: base_model's tokenizer has {len(tokenizer)} tokens, more than its model's vocab_size ({model.config.vocab_size})")
    return model, tokenizer, tokenizer_json, model_args_from_config(model.config, model.config.vocab_size, tokenizer.eos_token_id), digest


def run(raw: dict) -> None:
    cfg = from_dict(SFTConfig, raw, "sft")
    setup_threads()
    world, device = distributed.init(cfg.device)
    try:
        train(cfg, world, device)
    except ConfigError:
        distributed.let_rank_0_report(world)
        raise
    finally:
        distributed.shutdown()


def train(cfg: SFTConfig, world: distributed.World, device: torch.device) -> None:
    distributed.check_batch(cfg.batch_size, world)
    shard = read_shard(cfg.train_shard)
    if len(shard) == 0:
        raise ConfigError(f"sft: train_shard {cfg.train_shard} has no records")

    torch.manual_seed(cfg.seed)
    model, tokenizer, tokenizer_json, model_args, base_digest = load_model(cfg)
    fmt = chat_format_of(tokenizer)
    vocab_size, eos_id = len(tokenizer), tokenizer.eos_token_id
    if shard.vocab_size > vocab_size or int(shard.tokens.max(initial=0)) >= vocab_size:
        raise ConfigError(f"sft: train_shard was encoded with a larger vocabulary ({shard.vocab_size}) than tokenizer ({vocab_size})")
    lora = lora_settings(cfg.lora, model.config.model_type) if cfg.lora else None
    seq_len = min(model_args["context_length"], cfg.max_seq_length or model_args["context_length"])

    ckpt = load_checkpoint(cfg.resume_from) if cfg.resume_from else None
    if ckpt is not None:
        if ckpt["model_args"] != model_args:
            raise ConfigError(f"sft: resume_from {cfg.resume_from} has model {ckpt['model_args']}, config gives {model_args}")
        if ckpt.get("lora") != lora:
            raise ConfigError(f"sft: resume_from {cfg.resume_from} has lora {ckpt.get('lora')}, config gives {lora}")
        if ckpt["model"] is not None:
            model.load_state_dict(ckpt["model"])
        elif ckpt.get("base_sha256") != base_digest:
            raise ConfigError(f"sft: resume_from {cfg.resume_from} was trained on base weights {str(ckpt.get('base_sha256'))[:12]}, "
                              f"field 'base_model' has {str(base_digest)[:12]}")
    # With LoRA the checkpoints keep the adapter apart from the frozen base. A base given as `base_model` is named
    # by its digest only (stored once, by whoever gave it); a model built from scratch keeps its step-0 weights
    # under their plain names, which never change, so one reference serves every save.
    base_state = model.state_dict() if lora and base_digest is None else None
    if cfg.gradient_checkpointing:
        # Non-reentrant checkpointing also works when the inputs need no grad (a frozen LoRA base).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if lora:
        model = apply_lora(model, lora)
        if ckpt is not None:
            load_adapter_state(model, ckpt["adapter"])
    model = model.to(device)
    sparse_head = supports_logits_to_keep(model)
    # `model` stays the plain module (its state_dict is what checkpoints hold); `net` is what computes, wrapped in
    # DDP when there are several processes so that backward averages the gradients over them.
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world.distributed else model
    opt, sched = make_optimizer(model, cfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    sampler = Sampler(len(shard), cfg.seed)
    step, initial_loss, loss_value = 0, None, None

    if ckpt is not None:
        step = int(ckpt["step"])
        if step > cfg.steps:
            raise ConfigError(f"sft: field 'steps' ({cfg.steps}) is below the step of resume_from ({step})")
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        sampler = Sampler(len(shard), cfg.seed, ckpt["data_position"]["epoch"], ckpt["data_position"]["index"])
        initial_loss, loss_value = ckpt.get("initial_loss"), ckpt.get("loss")
        log.info("resumed from %s at step %d", cfg.resume_from, step)
        del ckpt

    ckpt_dir = os.path.join(cfg.output_dir, "checkpoints")
    os.makedirs(ckpt_dir, exist_ok=True)
    written = []

    def checkpoint(at: int) -> None:
        if not world.main:
            return
        path = os.path.join(ckpt_dir, f"step-{at:08d}.pt")
        save_checkpoint(path, Checkpoint(
            model=base_state if lora else model.state_dict(),
            base_sha256=base_digest if lora else None,
            adapter=adapter_state(model) if lora else None,
            lora=lora,
            chat_format=fmt.as_dict(),
            optimizer=opt.state_dict(),
            scheduler=sched.state_dict(),
            step=at,
            rng=rng_state(),
            data_position=sampler.position(),
            model_args=model_args,
            tokenizer_json=tokenizer_json,
            # Without this attempt's local paths: a resumed attempt rewrites a step's checkpoint byte for byte,
            # so its content-addressed artifact is the same object, never a second one.
            config={k: v for k, v in as_dict(cfg).items() if k not in LOCAL_PATHS},
            initial_loss=initial_loss,
            loss=loss_value,
        ))
        written.append(path)
        emit("checkpoint", step=at, path=path)

    emit("started", command="sft", device=device.type, step=step, total_steps=cfg.steps, params=count_params(model),
         trainable_params=count_params(model, trainable=True), processes=world.size)
    if step == 0:
        checkpoint(0)  # the untrained baseline

    net.train()
    while step < cfg.steps:
        t0 = time.perf_counter()
        micro = [make_batch(shard, distributed.rank_slice(sampler.next_batch(cfg.batch_size), world), seq_len, eos_id)
                 for _ in range(cfg.gradient_accumulation)]
        # The step's loss is the mean over every response token of its micro-batches (on every rank), as one
        # batch would give.
        targets, n_tokens = distributed.all_sum([sum(int((labels[:, 1:] != -100).sum()) for _, labels, _ in micro),
                                                 sum(n for _, _, n in micro)], device)
        lr = opt.param_groups[0]["lr"]
        opt.zero_grad(set_to_none=True)
        loss = torch.zeros(())
        for i, (ids, labels, _) in enumerate(micro):
            ids, labels = ids.to(device), labels.to(device)
            # DDP all-reduces gradients at the last micro-batch's backward only, and averages them over the
            # ranks: the world-size factor turns that average back into the sum over the global batch.
            with net.no_sync() if world.distributed and i < len(micro) - 1 else contextlib.nullcontext():
                with autocast(device):
                    total, _ = model_loss(net, ids, labels, sparse_head)
                part = total / max(targets, 1)
                (part * world.size).backward()
            loss = loss + part.detach().cpu()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        step += 1
        loss_value = distributed.all_sum([loss.item()], device)[0]
        if initial_loss is None:
            initial_loss = loss_value
        if step % cfg.log_every == 0 or step == cfg.steps:
            elapsed = time.perf_counter() - t0
            emit("step", step=step, loss=loss_value, lr=lr, tokens_per_sec=n_tokens / max(elapsed, 1e-9))
        if not math.isfinite(loss_value):
            raise ConfigError(f"sft: loss became {loss_value} at step {step}; lower learning_rate")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            checkpoint(step)

    outputs = {}
    if not world.main:
        return
    if lora:
        # A LoRA run ends with both deliverables, as `export` would write them from the last checkpoint: the
        # adapter alone (small; needs its base) and the base with the adapter merged in (a plain model).
        model = model.to("cpu").eval()
        outputs["adapter_dir"] = save_adapter_dir(model, os.path.join(cfg.output_dir, "adapter"))
        outputs["adapter_tar"] = write_model_tar(outputs["adapter_dir"], os.path.join(cfg.output_dir, "adapter.tar"))
        outputs["model_dir"] = save_model_dir(model.merge_and_unload(), None, os.path.join(cfg.output_dir, "model"), tokenizer_json=tokenizer_json, fmt=fmt)
        outputs["model_tar"] = write_model_tar(outputs["model_dir"], os.path.join(cfg.output_dir, "model.tar"))
    emit("finished", command="sft", step=step, final_loss=loss_value, initial_loss=initial_loss, checkpoints=written, **outputs)
