"""`tokenize`: train a byte-level BPE tokenizer on the cleaned records, or take a base model's, and encode the
records into a shard.

A record becomes encode(format_prompt(prompt)) with loss mask 0, then encode(response) + [eos] with loss mask 1.
Only the `tokenizers` library is needed here, so this command starts fast and never imports torch.
"""

import dataclasses
import os
import tarfile
from typing import Optional

from tokenizers import Tokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from .config import from_dict, read_jsonl, require
from .events import ConfigError, emit, log
from .shard import from_records, write_shard
from .template import EOS, SPECIAL_TOKENS, format_prompt

@dataclasses.dataclass
class TokenizeConfig:
    input: str
    output_dir: str
    vocab_size: int = 512
    min_frequency: int = 2
    # A base model's tokenizer to encode with instead of training one: a tokenizer.json, a model directory or
    # a model.tar. Fine-tuning a base model needs its own vocabulary.
    tokenizer: Optional[str] = None

    def __post_init__(self):
        # 256 byte symbols plus the two special tokens are always present.
        require(self.vocab_size >= 258, "tokenize", "vocab_size", f"must be at least 258 (256 bytes + 2 special tokens), got {self.vocab_size}")
        require(self.min_frequency >= 1, "tokenize", "min_frequency", f"must be at least 1, got {self.min_frequency}")
        require(bool(self.input), "tokenize", "input", "must be a path")
        require(bool(self.output_dir), "tokenize", "output_dir", "must be a path")


def read_records(path: str) -> list:
    """The {key, prompt, response} records of a JSONL file; a malformed line is a ConfigError naming it."""
    return read_jsonl(path, ("key", "prompt", "response"))


def train_tokenizer(texts, vocab_size: int, min_frequency: int) -> Tokenizer:
    """GPT-2-style byte-level BPE (no prefix space, so "a" and " a" stay distinct as in the data)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_base_tokenizer(path: str) -> Tokenizer:
    """tokenizer.json from a file, a model directory or an uncompressed model.tar; it must know <|endoftext|>."""
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(path):
        raise ConfigError(f"tokenize: tokenizer {path} not found")
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            try:
                text = tar.extractfile("tokenizer.json").read().decode("utf-8")
            except KeyError as e:
                raise ConfigError(f"tokenize: model archive {path} has no tokenizer.json") from e
        tok = Tokenizer.from_str(text)
    else:
        tok = Tokenizer.from_file(path)
    if tok.token_to_id(EOS) is None:
        raise ConfigError(f"tokenize: tokenizer {path} has no {EOS} token, which ends every response")
    return tok


def encode_records(tok: Tokenizer, records):
    """(token lists, mask lists) in the contract's layout."""
    eos = tok.token_to_id(EOS)
    prompts = tok.encode_batch([format_prompt(r["prompt"]) for r in records], add_special_tokens=False)
    responses = tok.encode_batch([r["response"] for r in records], add_special_tokens=False)
    tokens, masks = [], []
    for p, r in zip(prompts, responses):
        tokens.append(p.ids + r.ids + [eos])
        masks.append([0] * len(p.ids) + [1] * (len(r.ids) + 1))
    return tokens, masks


def run(raw: dict) -> None:
    cfg = from_dict(TokenizeConfig, raw, "tokenize")
    records = read_records(cfg.input)
    emit("started", command="tokenize", device="cpu", step=0, total_steps=0, params=0)
    if cfg.tokenizer:
        tok = load_base_tokenizer(cfg.tokenizer)
    else:
        texts = [t for r in records for t in (format_prompt(r["prompt"]), r["response"])]
        tok = train_tokenizer(texts, cfg.vocab_size, cfg.min_frequency)
    tokens, masks = encode_records(tok, records)
    os.makedirs(cfg.output_dir, exist_ok=True)
    tok_path = os.path.join(cfg.output_dir, "tokenizer.json")
    tok.save(tok_path + ".tmp")
    os.replace(tok_path + ".tmp", tok_path)
    shard = from_records([r["key"] for r in records], tokens, masks, tok.get_vocab_size(), tok.token_to_id(EOS))
    write_shard(os.path.join(cfg.output_dir, "encoded.shard"), shard)
    log.info("tokenized %d records into %d tokens, vocab %d", len(records), len(shard.tokens), shard.vocab_size)
    emit("finished", command="tokenize", records=len(records), tokens=int(len(shard.tokens)), vocab_size=shard.vocab_size)
