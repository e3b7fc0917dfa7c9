"""`judge`: a judged pairwise win rate of model A against model B on the same prompts.

Both models answer every prompt greedily (each with its own chat format; a `.pt` checkpoint reads `tokenizer`
and, for LoRA, `base_model`). A judge then compares the two answers of each prompt, twice, with the answers in
both orders, so that a judge which prefers whatever it reads first (position bias) cancels out:

  reward   a reward model written by `reward` (a sequence classifier with one output) scores each answer as
           `prompt + answer + end`, the text it was trained on; the higher score wins. It reads one answer at a
           time, so its two orders agree by construction: they are both recorded all the same.
  lm       a causal LM (a catalog base model) is asked JUDGE_QUESTION and must reply with the letter A or B;
           `parse_verdict` reads the letter. A reply it cannot read is no verdict.

A pair's outcome (for A): `win` when both orders prefer A's answer, `loss` when both prefer B's, `tie` when the
orders disagree (position decided it) or the answers are identical (the judge is not asked), `no-verdict` when
either order gave no readable verdict. No pair is dropped: the win rate is the mean over ALL pairs of
win 1, tie 0.5, loss 0 and no-verdict 0.5 (a judge that cannot say does not move the rate either way, and a
judge that can rarely say cannot push a model over a `min` gate), with its bootstrap 95% interval (stats.py),
beside the counts of each outcome.

With a `reference` per prompt, the reference rule of `compare` (an answer equal to the reference beats one that
is not) decides some pairs too; `agreement` says on how many of those the judge's outcome is the rule's, and a
pair is `disagreed` when its two orders disagree or the judge's outcome is not the rule's. Writes
`output_dir/judge.json` with every pair's answers and verdicts.
"""

import dataclasses
import json
import math
import os
import re
from typing import List, Literal, Optional

import torch

from .architecture import context_length
from .classifier import answers as classifier_answers, is_classifier
from .config import Device, from_dict, read_jsonl, require
from .decoding import generate
from .devices import resolve_device, setup_threads
from .eval import load_for_eval
from .events import ConfigError, Progress, emit, json_safe, log
from .model_files import load_pretrained
from .rl import load_reward_model
from .stats import bootstrap
from .template import as_messages, check_messages, encode_prompt, prompt_text
from .tokenizer import chat_format_of


@dataclasses.dataclass
class JudgeConfig:
    model_a: str  # the model judged: a model directory, model.tar or .pt checkpoint
    model_b: str  # what it is judged against (the serving model, or the untrained / base model)
    prompts: str  # JSONL of {prompt or messages, optional reference, optional key}
    judge: str  # a reward model (kind reward) or a causal LM (kind lm): directory or model.tar
    output_dir: str
    kind: Literal["reward", "lm"] = "reward"
    # For a `.pt` checkpoint among the models: its tokenizer.json, and the base model a LoRA adapter is over.
    tokenizer: Optional[str] = None
    base_model: Optional[str] = None
    max_new_tokens: int = 24  # of the judged models' answers
    judge_max_new_tokens: int = 8  # of an lm judge's reply: a letter, maybe a word or two before it
    batch_size: int = 16
    device: Device = "auto"

    def __post_init__(self):
        for field in ("model_a", "model_b", "prompts", "judge", "output_dir"):
            require(bool(getattr(self, field)), "judge", field, "must be a non-empty path")
        require(self.max_new_tokens >= 1, "judge", "max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        require(self.judge_max_new_tokens >= 1, "judge", "judge_max_new_tokens", f"must be at least 1, got {self.judge_max_new_tokens}")
        require(self.batch_size >= 1, "judge", "batch_size", f"must be at least 1, got {self.batch_size}")


# What an lm judge is asked; the answers are shown as given, each on its own lines.
JUDGE_QUESTION = ("Which answer to the question below is better: more correct, more helpful and safer? "
                  "Reply with the single letter A or B.\n\nQuestion:\n{prompt}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}")

# The letter a reply starts with, after markup ("**A**", "(B)") and an optional "the better answer is", when the
# letter stands alone: at the end, before punctuation or a line break, or before "is" / "wins". "A good one" is the
# article, not a verdict.
_VERDICT = re.compile(r"^[\s*_\"'`(\[]*(?:(?:the\s+)?(?:better\s+)?answer\s*(?:is\s*)?:?\s*)?([AB])(?=\s*$|[^\w\s]|\s*\n|\s+(?:is|wins)\b)",
                      re.IGNORECASE)


def parse_verdict(reply: str) -> Optional[str]:
    """'A' or 'B' when the reply names one first, None when it cannot be read as a verdict."""
    m = _VERDICT.match(reply)
    return m.group(1).upper() if m else None


def outcome_of(first: Optional[str], second: Optional[str]) -> str:
    """A pair's outcome for model A from the verdicts of the two orders: `first` with A's answer shown first,
    `second` with B's answer shown first (so there the letter B means A's answer)."""
    if first is None or second is None:
        return "no-verdict"
    prefers = ("a" if first == "A" else "b" if first == "B" else "tie", "a" if second == "B" else "b" if second == "A" else "tie")
    if prefers == ("a", "a"):
        return "win"
    if prefers == ("b", "b"):
        return "loss"
    return "tie"


SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0, "no-verdict": 0.5}


def reference_winner(reference: Optional[str], a: str, b: str) -> Optional[str]:
    """'a' or 'b' when exactly one answer equals the reference (compare's reference rule), else None."""
    if reference is None:
        return None
    ok_a, ok_b = a == reference.strip(), b == reference.strip()
    return "a" if ok_a and not ok_b else "b" if ok_b and not ok_a else None


def summarize(pairs: List[dict]) -> dict:
    """The figures of judged pairs (each with `outcome`, `reference_winner`): counts, the win rate with its
    interval, and agreement with the reference rule."""
    counts = {o: sum(p["outcome"] == o for p in pairs) for o in ("win", "loss", "tie", "no-verdict")}
    decided = [p for p in pairs if p["reference_winner"] is not None and p["outcome"] != "no-verdict"]
    agreed = sum((p["outcome"], p["reference_winner"]) in (("win", "a"), ("loss", "b")) for p in decided)
    return {
        "pairs": len(pairs), "wins": counts["win"], "losses": counts["loss"], "ties": counts["tie"], "no_verdict": counts["no-verdict"],
        "win_rate": bootstrap([SCORE[p["outcome"]] for p in pairs]),
        "agreement": {"decided": len(decided), "agreed": agreed},
        "disagreed": sum(p["disagreed"] for p in pairs),
    }


def read_prompts(path: str) -> list:
    """[(key, prompt, reference or None)]: a prompt is a string (one user turn) or a conversation to answer."""
    out = []
    for n, r in enumerate(read_jsonl(path, ()), 1):
        prompt = r.get("messages", r.get("prompt"))
        why = check_messages(prompt, "messages", ending="prompt") if isinstance(prompt, list) else (
            None if isinstance(prompt, str) else "field 'prompt' (a string) or 'messages' (a list) is required")
        if why:
            raise ConfigError(f"{path} row {n}: {why}")
        reference = r.get("reference")
        out.append((str(r.get("key", n)), prompt, None if reference is None else str(reference)))
    return out


def answers_of(model, tokenizer, prompts: list, max_new_tokens: int, batch_size: int) -> List[str]:
    """Greedy answers of a loaded model, decoded and stripped."""
    fmt = chat_format_of(tokenizer)
    ids = [encode_prompt(tokenizer, fmt, p.strip() if isinstance(p, str) else p) for p in prompts]
    outs = generate(model, ids, max_new_tokens, tokenizer.eos_token_id, batch_size=batch_size, progress=Progress("generate", len(ids)))
    return [tokenizer.decode(new, skip_special_tokens=True).strip() for new, _ in outs]


def model_answers(cfg: JudgeConfig, path: str, prompts: list, device) -> List[str]:
    if is_classifier(path):
        return classifier_answers(path, prompts)
    model, tokenizer, _ = load_for_eval(path, device, tokenizer=cfg.tokenizer if path.endswith(".pt") else None, base_model=cfg.base_model)
    answers = answers_of(model, tokenizer, prompts, cfg.max_new_tokens, cfg.batch_size)
    del model
    return answers


@torch.no_grad()
def reward_verdicts(cfg: JudgeConfig, rows: list, device) -> List[tuple]:
    """(verdict A-first, verdict B-first, reply A-first, reply B-first) per row, from the reward model's scores."""
    model, tokenizer = load_reward_model(cfg.judge)
    model.to(device)
    fmt = chat_format_of(tokenizer)
    limit = context_length(model.config)
    progress = Progress("judge", len(rows))

    def score(prompt, answer: str) -> float:
        ids = tokenizer(prompt_text(fmt, as_messages(prompt)) + answer + fmt.end, add_special_tokens=False, return_tensors="pt").input_ids
        return float(model(input_ids=ids[:, -limit:].to(device)).logits[0, 0])  # the end kept: the score is read there

    out = []
    for prompt, a, b in rows:
        sa, sb = score(prompt, a), score(prompt, b)
        progress.advance(1)
        if not (math.isfinite(sa) and math.isfinite(sb)):
            out.append((None, None, f"{sa} vs {sb}", f"{sb} vs {sa}"))
            continue
        first = "A" if sa > sb else "B" if sb > sa else "tie"
        second = {"A": "B", "B": "A", "tie": "tie"}[first]
        out.append((first, second, f"{sa:.4f} vs {sb:.4f}", f"{sb:.4f} vs {sa:.4f}"))
    return out


@torch.no_grad()
def lm_verdicts(cfg: JudgeConfig, rows: list, device) -> List[tuple]:
    """(verdict A-first, verdict B-first, reply A-first, reply B-first) per row, from an LM asked JUDGE_QUESTION."""
    model, tokenizer = load_pretrained(cfg.judge, device)
    fmt = chat_format_of(tokenizer)
    asked = []
    for prompt, a, b in rows:
        shown = prompt if isinstance(prompt, str) else "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
        for first, second in ((a, b), (b, a)):
            asked.append(encode_prompt(tokenizer, fmt, JUDGE_QUESTION.format(prompt=shown, first=first, second=second)))
    longest = max(len(x) for x in asked)
    if longest + cfg.judge_max_new_tokens > context_length(model.config):
        raise ConfigError(f"judge config: field 'judge' ({cfg.judge}) cannot read a pair: a question of {longest} tokens does not fit "
                          f"its context length ({context_length(model.config)})")
    outs = generate(model, asked, cfg.judge_max_new_tokens, tokenizer.eos_token_id, batch_size=cfg.batch_size, progress=Progress("judge", len(asked)))
    replies = [tokenizer.decode(new, skip_special_tokens=True).strip() for new, _ in outs]
    return [(parse_verdict(replies[2 * i]), parse_verdict(replies[2 * i + 1]), replies[2 * i], replies[2 * i + 1]) for i in range(len(rows))]


def run(raw: dict) -> None:
    cfg = from_dict(JudgeConfig, raw, "judge")
    setup_threads()
    device = resolve_device(cfg.device)
    rows = read_prompts(cfg.prompts)
    if not rows:
        raise ConfigError(f"judge: {cfg.prompts} has no prompts")
    emit("started", command="judge", device=device.type, step=0, total_steps=len(rows), params=None)
    prompts = [p for _, p, _ in rows]
    a, b = model_answers(cfg, cfg.model_a, prompts, device), model_answers(cfg, cfg.model_b, prompts, device)
    # Identical answers tie without asking: there is nothing to prefer.
    differ = [i for i in range(len(rows)) if a[i] != b[i]]
    asked = [(prompts[i], a[i], b[i]) for i in differ]
    verdicts = (reward_verdicts if cfg.kind == "reward" else lm_verdicts)(cfg, asked, device) if asked else []
    by_row = dict(zip(differ, verdicts))

    pairs = []
    for i, (key, prompt, reference) in enumerate(rows):
        first, second, reply_first, reply_second = by_row.get(i, ("tie", "tie", None, None))
        outcome = outcome_of(first, second)
        winner = reference_winner(reference, a[i], b[i])
        orders_disagree = first in ("A", "B") and second in ("A", "B") and outcome == "tie"
        by_rule = winner is not None and outcome != "no-verdict" and (outcome, winner) not in (("win", "a"), ("loss", "b"))
        pairs.append({"key": key, "prompt": prompt, "reference": reference, "answer_a": a[i], "answer_b": b[i],
                      "verdict_ab": first, "verdict_ba": second, "reply_ab": reply_first, "reply_ba": reply_second,
                      "outcome": outcome, "reference_winner": winner, "disagreed": orders_disagree or by_rule})
    result = {"kind": cfg.kind, **summarize(pairs)}
    log.info("judge: %s", result)
    os.makedirs(cfg.output_dir, exist_ok=True)
    out = os.path.join(cfg.output_dir, "judge.json")
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(json_safe({**result, "model_a": cfg.model_a, "model_b": cfg.model_b, "judge": cfg.judge, "pairs": pairs}), f, indent=1)
    os.replace(out + ".tmp", out)
    emit("finished", command="judge", **result)
