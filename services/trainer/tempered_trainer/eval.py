"""`eval`: response-token loss and perplexity of checkpoints or exported models on a shard, and optionally
greedy generation scored by exact match and, for a classification task (`choices`), by the accuracy and macro-F1
of the label extracted from each answer, each with its n and a bootstrap 95% interval (`intervals`, stats.py). Several models in one call share one interpreter start and one shard
read (validation scores every checkpoint of a run). Writes `output_dir/eval.json`.

A record's generation prompt is everything before its last answer (the last run of loss-carrying tokens), so a
multi-turn conversation is scored on its final assistant turn; plain-text records (all loss) are not generated.
"""

import dataclasses
import json
import math
import os
import time
from typing import List, Optional

import numpy as np
import torch

from . import classifier, gguf_eval
from .architecture import context_length
from .checkpoint import checkpoint_tokenizer, load_checkpoint_model
from .config import Device, from_dict, require
from .decoding import generate
from .devices import autocast, resolve_device, setup_threads
from .events import ConfigError, Progress, emit, json_safe, log
from .model_files import load_pretrained
from .stats import bootstrap, bootstrap_statistic
from .text_metrics import TEXT_METRICS
from .sft import make_batch, model_loss, supports_logits_to_keep
from .shard import read_shard
from .tokenizer import chat_format_of, read_tokenizer_json, tokenizer_from_json


@dataclasses.dataclass
class EvalConfig:
    shard: str
    output_dir: str
    checkpoint: Optional[str] = None
    model: Optional[str] = None
    # Several to score in one call, each a `.pt` checkpoint, a model directory, a `model.tar` or a `.gguf` file (gguf_eval.py).
    checkpoints: Optional[List[str]] = None
    # May be left out with `model` (its directory has tokenizer.json) and with checkpoints that carry their tokenizer.
    tokenizer: Optional[str] = None
    batch_size: int = 32
    device: Device = "auto"
    generate: bool = False
    max_new_tokens: int = 32
    # With `generate`, a classification task: the label of an answer is the first of these it contains.
    choices: Optional[List[str]] = None
    # A LoRA checkpoint over a base model holds only the adapter: the base it was trained on.
    base_model: Optional[str] = None
    max_seq_length: Optional[int] = None  # records are cut to this many tokens, as in training
    # Indexes into the targets whose loss (and perplexity) to compute; None: all. The others, with `generate`, are
    # scored on their answers alone: a loss pass costs about as much as generating short answers.
    loss_targets: Optional[List[int]] = None
    # With `generate`, free-text scores of each answer against its reference (text_metrics.py): rouge_l, chrf.
    text_metrics: Optional[List[str]] = None

    def __post_init__(self):
        given = [x for x in (self.checkpoint, self.model, self.checkpoints) if x is not None]
        require(len(given) == 1, "eval", "checkpoint", "or 'model' or 'checkpoints' must be given, exactly one of them")
        require(self.checkpoints is None or len(self.checkpoints) > 0, "eval", "checkpoints", "must be a non-empty list of paths")
        require(self.batch_size >= 1, "eval", "batch_size", f"must be at least 1, got {self.batch_size}")
        require(self.max_new_tokens >= 1, "eval", "max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        require(self.choices is None or (len(self.choices) >= 2 and all(c.strip() for c in self.choices)
                                         and len({c.strip().casefold() for c in self.choices}) == len(self.choices)),
                "eval", "choices", "must be a list of at least two different non-empty strings")
        require(self.choices is None or self.generate, "eval", "choices", "needs generate: true (labels are read from generated answers)")
        require(self.text_metrics is None or (self.generate and all(m in TEXT_METRICS for m in self.text_metrics)), "eval", "text_metrics",
                f"needs generate: true and names of {sorted(TEXT_METRICS)}, got {self.text_metrics}")
        require(self.max_seq_length is None or self.max_seq_length >= 2, "eval", "max_seq_length", f"must be at least 2, got {self.max_seq_length}")
        n = len(self.targets()) if len(given) == 1 else 0
        require(self.loss_targets is None or all(0 <= i < n for i in self.loss_targets), "eval", "loss_targets",
                f"must be indexes of the {n} targets, got {self.loss_targets}")
        require(self.loss_targets is None or self.generate or set(self.loss_targets) == set(range(n)), "eval", "loss_targets",
                "may leave a target out only with generate: true (it would not be scored at all)")

    def targets(self) -> list:
        """What to score, in order."""
        return self.checkpoints if self.checkpoints is not None else [self.checkpoint or self.model]


def load_for_eval(path: str, device, tokenizer: Optional[str] = None, base_model: Optional[str] = None):
    """(model, tokenizer, step) from either an sft checkpoint + tokenizer file or a model directory / tar;
    step is the checkpoint's training step, None for an exported model. `base_model`: what a LoRA checkpoint
    is over; `tokenizer`: a tokenizer.json to use instead of the model's own vocabulary."""
    if path.endswith(".pt"):
        model, ckpt = load_checkpoint_model(path, device, base_model=base_model)
        return model, checkpoint_tokenizer(ckpt, tokenizer, path), int(ckpt["step"])
    model, own = load_pretrained(path, device)
    if tokenizer:  # the given vocabulary, with the model's own chat format (a bare tokenizer.json has none)
        return model, tokenizer_from_json(read_tokenizer_json(tokenizer), tokenizer, chat_format_of(own)), None
    return model, own, None


@torch.no_grad()
def shard_loss(model, shard, batch_size: int, pad_id: int, max_seq_length=None, progress=None) -> float:
    """Mean next-token loss over all response tokens of the shard (token-weighted, not batch-weighted)."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    seq_len = min(context_length(model.config), max_seq_length or context_length(model.config))
    sparse = supports_logits_to_keep(model)
    for s in range(0, len(shard), batch_size):
        ids, labels, _ = make_batch(shard, range(s, min(s + batch_size, len(shard))), seq_len, pad_id)
        with autocast(device):
            t, c = model_loss(model, ids.to(device), labels.to(device), sparse)
        total, count = total + float(t), count + c
        if progress is not None:
            progress.advance(len(ids))
    if count == 0:
        raise ConfigError("eval: the shard has no response tokens within the model's context length")
    return total / count


def last_answer(tokens, mask):
    """(prompt ids, answer ids without its end token) of a record: the answer is the last run of loss-carrying
    tokens, the prompt everything before it. None for a record that is all loss (plain text: nothing to answer)."""
    loss_at = np.flatnonzero(mask == 1)
    if len(loss_at) == 0:
        return None
    end = int(loss_at[-1]) + 1
    start = end
    while start > 0 and mask[start - 1] == 1:
        start -= 1
    if start == 0:
        return None
    return tokens[:start].tolist(), tokens[start:end].tolist()


def answered_records(shard, tokenizer) -> tuple:
    """(keys, prompt ids, reference answers) of the shard's records that have an answer, the end token left out."""
    keys, prompts, refs = [], [], []
    for i in range(len(shard)):
        split = last_answer(*shard.record(i))
        if split is None:
            continue
        prompt, resp = split
        if resp and resp[-1] == shard.eos_id:
            resp = resp[:-1]
        keys.append(shard.keys[i])
        prompts.append(prompt)
        refs.append(tokenizer.decode(resp, skip_special_tokens=True))
    return keys, prompts, refs


def extract_label(answer: str, choices) -> Optional[str]:
    """The choice an answer names: the one that occurs earliest in it, case-insensitively (None: no choice)."""
    text = answer.casefold()
    found = [(text.find(c.strip().casefold()), c) for c in choices]
    found = [(at, c) for at, c in found if at >= 0]
    return min(found)[1] if found else None


def label_scores(pairs, choices) -> dict:
    """Accuracy and macro-F1 of (predicted label or None, reference label) pairs over `choices`."""
    n = len(pairs)
    accuracy = sum(p == r for p, r in pairs) / n if n else 0.0
    f1s = []
    for c in choices:
        tp = sum(p == c and r == c for p, r in pairs)
        fp = sum(p == c and r != c for p, r in pairs)
        fn = sum(p != c and r == c for p, r in pairs)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s), "no_label": sum(p is None for p, _ in pairs)}


def score_generation(answer, tokenizer, shard, choices=None, text_metrics=()):
    """(figures, predictions): greedy continuation of each record's prompt, up to the end token, against its
    last answer; exact match always, label accuracy and macro-F1 with `choices`. `answer(prompts, progress)` gives
    the new token ids of each prompt (a PyTorch model's or a GGUF file's); `tokens_per_sec` is its throughput."""
    keys, prompts, refs = answered_records(shard, tokenizer)
    if not prompts:
        return {}, []
    started = time.perf_counter()
    outs = answer(prompts, Progress("generate", len(prompts)))
    seconds = time.perf_counter() - started
    preds, hits, labels = [], 0, []
    for key, prompt, new, ref in zip(keys, prompts, outs, refs):
        text = tokenizer.decode(new, skip_special_tokens=True).strip()
        ok = text == ref.strip()
        hits += ok
        pred = {"key": key, "prompt": tokenizer.decode(prompt), "reference": ref, "prediction": text, "correct": ok}
        if choices:
            pred["label"], pred["reference_label"] = extract_label(text, choices), extract_label(ref, choices)
            labels.append((pred["label"], pred["reference_label"]))
        for name in text_metrics:
            pred[name] = TEXT_METRICS[name](text, ref.strip())
        preds.append(pred)
    new_tokens = sum(len(new) for new in outs)
    figures = {"exact_match": hits / len(prompts), "generated": len(prompts), "new_tokens": new_tokens,
               "tokens_per_sec": new_tokens / seconds if seconds > 0 else None}
    intervals = {"exact_match": bootstrap([p["correct"] for p in preds])}
    if choices:
        figures.update(label_scores(labels, choices))
        intervals["accuracy"] = bootstrap([p == r for p, r in labels])
        intervals["macro_f1"] = bootstrap_statistic(labels, lambda rows: label_scores(rows, choices)["macro_f1"])
    for name in text_metrics:
        intervals[name] = bootstrap([p[name] for p in preds])
        figures[name] = intervals[name]["value"]
    figures["intervals"] = intervals
    return figures, preds


def evaluate_one(cfg: EvalConfig, path: str, shard, device, with_loss: bool = True) -> tuple:
    """(figures, predictions or None) of one checkpoint or model on the shard; without `with_loss`, loss and
    perplexity are None."""
    if classifier.is_classifier(path):
        return classifier.evaluate(path, shard, cfg.choices, cfg.generate, with_loss)
    if path.endswith(".gguf"):
        return gguf_eval.evaluate(cfg, path, shard, with_loss)
    model, tokenizer, step = load_for_eval(path, device, cfg.tokenizer, cfg.base_model)
    if int(shard.tokens.max(initial=0)) >= model.config.vocab_size:
        raise ConfigError(f"eval: shard {cfg.shard} has token ids beyond the model's vocabulary ({model.config.vocab_size})")
    loss = shard_loss(model, shard, cfg.batch_size, tokenizer.eos_token_id, cfg.max_seq_length, Progress("loss", len(shard))) if with_loss else None
    result = {"checkpoint": path, "step": step, "loss": loss,
              "perplexity": None if loss is None else math.exp(loss) if loss < 700 else float("inf"), "examples": len(shard)}
    predictions = None
    if cfg.generate:
        def answer(prompts, progress):
            outs = generate(model, prompts, cfg.max_new_tokens, tokenizer.eos_token_id, batch_size=cfg.batch_size, progress=progress)
            return [new for new, _ in outs]

        figures, predictions = score_generation(answer, tokenizer, shard, cfg.choices, cfg.text_metrics or ())
        result.update(figures)
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
    for i, path in enumerate(targets):
        result, predictions = evaluate_one(cfg, path, shard, device, cfg.loss_targets is None or i in cfg.loss_targets)
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
