"""`sample`: several sampled responses of one model to each prompt, for people to compare and label.

Each prompt goes through the tokenize template and is answered `samples` times by temperature sampling, up to
`<|endoftext|>` or `max_new_tokens`; the answers are decoded without special tokens and stripped. One line per
prompt, in input order, is written to `output_dir/samples.jsonl`. Sampling draws from torch's generator seeded
with `seed` once before the first prompt, so the same model, prompts, config and device give the same file.
"""

import dataclasses
import json
import os

import torch

from .architecture import context_length
from .config import Device, from_dict, read_jsonl, require
from .decoding import generate
from .devices import resolve_device, setup_threads
from .events import Progress, emit, log
from .model_files import load_pretrained
from .template import encode_prompt
from .tokenizer import chat_format_of


@dataclasses.dataclass
class SampleConfig:
    model: str  # model directory or model.tar
    prompts: str  # JSONL with a string `prompt` per line; other fields are ignored
    output_dir: str
    samples: int = 2
    temperature: float = 1.0
    max_new_tokens: int = 24
    seed: int = 0
    batch_size: int = 64
    device: Device = "auto"

    def __post_init__(self):
        for field in ("model", "prompts", "output_dir"):
            require(bool(getattr(self, field)), "sample", field, "must be a non-empty path")
        require(self.samples >= 2, "sample", "samples", f"must be at least 2, got {self.samples}")
        require(self.temperature > 0, "sample", "temperature", f"must be above 0 (sampling, not greedy), got {self.temperature}")
        require(self.max_new_tokens >= 1, "sample", "max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        require(self.seed >= 0, "sample", "seed", f"must be at least 0, got {self.seed}")
        require(self.batch_size >= 1, "sample", "batch_size", f"must be at least 1, got {self.batch_size}")


def run(raw: dict) -> None:
    cfg = from_dict(SampleConfig, raw, "sample")
    setup_threads()
    device = resolve_device(cfg.device)
    prompts = [r["prompt"] for r in read_jsonl(cfg.prompts, ("prompt",))]
    model, tokenizer = load_pretrained(cfg.model, device)
    emit("started", command="sample", device=device.type, step=0, total_steps=len(prompts), params=None)

    ids = [encode_prompt(tokenizer, chat_format_of(tokenizer), p.strip()) for p in prompts]
    ctx = context_length(model.config)
    truncated = sum(len(x) > ctx - 1 for x in ids)  # generate keeps their last ctx - 1 tokens
    if truncated:
        log.warning("sample: %d prompts are longer than the context (%d tokens) and are cut from the left", truncated, ctx)
    torch.manual_seed(cfg.seed)
    # Each prompt repeated `samples` times in a row: the copies share a batch and each draws its own tokens.
    outs = generate(model, [x for x in ids for _ in range(cfg.samples)], cfg.max_new_tokens, tokenizer.eos_token_id,
                    temperature=cfg.temperature, batch_size=cfg.batch_size, progress=Progress("sample", len(prompts) * cfg.samples))
    # A sampled byte-level token can be half of a multi-byte character, which decodes to U+FFFD: drop those
    # rather than show people a replacement character they cannot judge.
    texts = [tokenizer.decode(new, skip_special_tokens=True).replace("\ufffd", "").strip() for new, _ in outs]

    os.makedirs(cfg.output_dir, exist_ok=True)
    out = os.path.join(cfg.output_dir, "samples.jsonl")
    distinct = 0
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        for i, prompt in enumerate(prompts):
            responses = texts[i * cfg.samples : (i + 1) * cfg.samples]
            distinct += len(set(responses)) > 1
            f.write(json.dumps({"prompt": prompt, "responses": responses}, ensure_ascii=False) + "\n")
    os.replace(out + ".tmp", out)
    log.info("sample: %d prompts, %d with differing responses", len(prompts), distinct)
    emit("finished", command="sample", prompts=len(prompts), distinct=distinct, truncated=truncated, samples=out)
