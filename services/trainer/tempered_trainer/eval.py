"""`eval`: response-token loss and perplexity of checkpoints or exported models on a shard, and optionally
greedy generation scored by exact match. Several models in one call share one interpreter start and one
shard read (validation scores every checkpoint of a run). Writes `output_dir/eval.json`.
"""

import dataclasses
import json
import math
import os
from typing import Optional

import torch

from .config import check_device, from_dict, require
from .events import ConfigError, emit, json_safe, log
from .model import (autocast, checkpoint_tokenizer, context_length, generate, load_checkpoint_model, load_pretrained, load_tokenizer,
                    resolve_device, setup_threads)
from .sft import make_batch, response_loss
from .shard import read_shard


@dataclasses.dataclass
class EvalConfig:
    shard: str
    output_dir: str
    checkpoint: Optional[str] = None
    model: Optional[str] = None
    # Several to score in one call, each a `.pt` checkpoint, a model directory or a `model.tar`.
    checkpoints: Optional[list] = None
    # May be left out with `model` (its directory has tokenizer.json) and with checkpoints that carry their tokenizer.
    tokenizer: Optional[str] = None
    batch_size: int = 32
    device: str = "auto"
    generate: bool = False
    max_new_tokens: int = 32

    def __post_init__(self):
        given = [x for x in (self.checkpoint, self.model, self.checkpoints) if x is not None]
        require(len(given) == 1, "eval", "checkpoint", "or 'model' or 'checkpoints' must be given, exactly one of them")
        require(self.checkpoints is None or (isinstance(self.checkpoints, list) and len(self.checkpoints) > 0
                                             and all(isinstance(c, str) for c in self.checkpoints)),
                "eval", "checkpoints", "must be a non-empty list of paths")
        require(self.batch_size >= 1, "eval", "batch_size", f"must be at least 1, got {self.batch_size}")
        require(self.max_new_tokens >= 1, "eval", "max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        check_device("eval", self.device)


    def targets(self) -> list:
        """What to score, in order."""
        return self.checkpoints if self.checkpoints is not None else [self.checkpoint or self.model]


def load_for_eval(cfg: EvalConfig, path: str, device):
    """(model, tokenizer, step) from either an sft checkpoint + tokenizer file or a model directory / tar;
    step is the checkpoint's training step, None for an exported model."""
    if path.endswith(".pt"):
        model, ckpt = load_checkpoint_model(path, device)
        return model, checkpoint_tokenizer(ckpt, cfg.tokenizer, path), int(ckpt["step"])
    model, tokenizer = load_pretrained(path, device)
    return model, (load_tokenizer(cfg.tokenizer) if cfg.tokenizer else tokenizer), None


@torch.no_grad()
def shard_loss(model, shard, batch_size: int, pad_id: int) -> float:
    """Mean next-token loss over all response tokens of the shard (token-weighted, not batch-weighted)."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for s in range(0, len(shard), batch_size):
        ids, labels, _ = make_batch(shard, range(s, min(s + batch_size, len(shard))), context_length(model.config), pad_id)
        with autocast(device):
            logits = model(input_ids=ids.to(device)).logits
        t, c = response_loss(logits, labels.to(device), reduction="sum")
        total, count = total + float(t), count + c
    if count == 0:
        raise ConfigError("eval: the shard has no response tokens within the model's context length")
    return total / count


def score_generation(model, tokenizer, shard, max_new_tokens: int, batch_size: int):
    """(exact match, predictions): greedy continuation of each prompt, up to eos, against its response."""
    prompts, refs = [], []
    for i in range(len(shard)):
        tok, mask = shard.record(i)
        resp = tok[mask == 1].tolist()
        if resp and resp[-1] == shard.eos_id:
            resp = resp[:-1]
        prompts.append(tok[mask == 0].tolist())
        refs.append(tokenizer.decode(resp))
    outs = generate(model, prompts, max_new_tokens, tokenizer.eos_token_id, batch_size=batch_size)
    preds, hits = [], 0
    for i, ((new, _), ref) in enumerate(zip(outs, refs)):
        text = tokenizer.decode(new).strip()
        ok = text == ref.strip()
        hits += ok
        preds.append({"key": shard.keys[i], "prompt": tokenizer.decode(prompts[i]), "reference": ref, "prediction": text, "correct": ok})
    return hits / max(len(shard), 1), preds


def evaluate_one(cfg: EvalConfig, path: str, shard, device) -> tuple:
    """(figures, predictions or None) of one checkpoint or model on the shard."""
    model, tokenizer, step = load_for_eval(cfg, path, device)
    if int(shard.tokens.max(initial=0)) >= model.config.vocab_size:
        raise ConfigError(f"eval: shard {cfg.shard} has token ids beyond the model's vocabulary ({model.config.vocab_size})")
    loss = shard_loss(model, shard, cfg.batch_size, tokenizer.eos_token_id)
    result = {"checkpoint": path, "step": step, "loss": loss,
              "perplexity": math.exp(loss) if loss < 700 else float("inf"), "examples": len(shard)}
    predictions = None
    if cfg.generate:
        result["exact_match"], predictions = score_generation(model, tokenizer, shard, cfg.max_new_tokens, cfg.batch_size)
    log.info("eval: %s", result)
    return result, predictions


def run(raw: dict) -> None:
    cfg = from_dict(EvalConfig, raw, "eval")
    setup_threads()
    device = resolve_device(cfg.device)
    shard = read_shard(cfg.shard)
    if len(shard) == 0:
        raise ConfigError(f"eval: shard {cfg.shard} has no records")
    targets = cfg.targets()
    emit("started", command="eval", device=device.type, step=0, total_steps=len(targets), params=None)

    results, all_predictions = [], []
    for path in targets:
        result, predictions = evaluate_one(cfg, path, shard, device)
        results.append(result)
        all_predictions.append(predictions)
        emit("eval", **result)

    os.makedirs(cfg.output_dir, exist_ok=True)
    out = os.path.join(cfg.output_dir, "eval.json")
    body = [{**r, **({"predictions": p} if p is not None else {})} for r, p in zip(results, all_predictions)]
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(json_safe({"results": body}), f, indent=1)
    os.replace(out + ".tmp", out)
    # The first result's figures also stand at the top level, for callers that score one model.
    emit("finished", command="eval", **{k: v for k, v in results[0].items() if k not in ("checkpoint", "step")},
         results=results)
