"""`tokenize`: train a byte-level BPE tokenizer on the cleaned records, or take a base model's, and encode the
records into a shard.

Each record ({key, prompt, response}, {key, messages} or {key, text}) is rendered by template.py with the model's
chat format (a base model's chat template, or the plain template of a tokenizer trained here) into pieces with and
without loss: assistant turns and their end token carry loss, a plain-text record carries it everywhere. Only the
`tokenizers` library (and Jinja, through transformers' renderer, for a chat template) is needed here, so this
command never imports torch.
"""

import dataclasses
import itertools
import os
import tarfile
from typing import Optional, Tuple

import numpy as np
from tokenizers import Tokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from .config import from_dict, read_jsonl, require
from .events import ConfigError, Progress, emit, log
from .shard import Shard, write_shard
from .template import PLAIN, SPECIAL_TOKENS, ChatFormat, check_messages, read_chat_format, record_segments, vocabulary_texts


@dataclasses.dataclass
class TokenizeConfig:
    input: str
    output_dir: str
    vocab_size: int = 512
    min_frequency: int = 2
    # A base model's tokenizer to encode with instead of training one: a tokenizer.json, a model directory or
    # a model.tar. Fine-tuning a base model needs its own vocabulary.
    tokenizer: Optional[str] = None
    # False: write tokenizer.json only (a data stage run on shards trains it once, then encodes each shard with it).
    encode: bool = True
    # The records the vocabulary is learnt from, when not input's own: a sample of a large corpus (the tokenize
    # stage draws it, tokenizer.sampleBytes). Ignored with a base model's tokenizer.
    vocabulary_input: Optional[str] = None

    def __post_init__(self):
        # 256 byte symbols plus the two special tokens are always present.
        require(self.vocab_size >= 258, "tokenize", "vocab_size", f"must be at least 258 (256 bytes + 2 special tokens), got {self.vocab_size}")
        require(self.min_frequency >= 1, "tokenize", "min_frequency", f"must be at least 1, got {self.min_frequency}")
        require(bool(self.input), "tokenize", "input", "must be a path")
        require(bool(self.output_dir), "tokenize", "output_dir", "must be a path")


def read_records(path: str) -> list:
    """The training records of a JSONL file ({key, prompt, response}, {key, messages} or {key, text}); a malformed
    line is a ConfigError naming it (ingest quarantines bad rows, so one here is a bug upstream)."""
    return read_jsonl(path, (), check=record_problem)


def record_problem(r) -> Optional[str]:
    if not isinstance(r, dict) or not isinstance(r.get("key"), str):
        return "a record must be an object with a string 'key'"
    if "messages" in r:
        return check_messages(r["messages"], "messages", ending="assistant")
    if "text" in r and "prompt" not in r:
        return None if isinstance(r["text"], str) else "field 'text' must be a string"
    for field in ("prompt", "response"):
        if not isinstance(r.get(field), str):
            return f"field '{field}' must be a string (or give 'messages' or 'text')"
    return None


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


def load_base_tokenizer(path: str):
    """(tokenizer, chat format) from a tokenizer.json (the plain format), a model directory or an uncompressed
    model.tar (the chat format its tokenizer_config.json declares); the format's end token must be in the vocabulary."""
    import tempfile

    fmt = PLAIN
    if os.path.isdir(path):
        fmt = read_chat_format(path)
        path = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(path):
        raise ConfigError(f"tokenize: tokenizer {path} not found")
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tar, tempfile.TemporaryDirectory() as tmp:
            names = set(tar.getnames())
            if "tokenizer.json" not in names:
                raise ConfigError(f"tokenize: model archive {path} has no tokenizer.json")
            wanted = [n for n in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja") if n in names]
            tar.extractall(tmp, members=[tar.getmember(n) for n in wanted], filter="data")
            fmt = read_chat_format(tmp)
            tok = Tokenizer.from_file(os.path.join(tmp, "tokenizer.json"))
    else:
        tok = Tokenizer.from_file(path)
    if tok.token_to_id(fmt.end) is None:
        raise ConfigError(f"tokenize: tokenizer {path} has no {fmt.end} token, which ends every answer")
    return tok, fmt


ENCODE_BATCH_RECORDS = 4096


def encode_records(tok: Tokenizer, records, fmt: ChatFormat = PLAIN) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, tokens, loss mask) in the contract's layout: every record rendered by the chat format. The pieces
    of 4096 records at a time go to the Rust tokenizer in one batch (threads, no Python per piece; `_fast`: no
    character offsets, which nothing here reads) and come back into numpy arrays directly (Python lists of a
    corpus' token ids cost gigabytes). The ids are those of encoding each record's pieces alone
    (`encode_segments`): a piece is always encoded on its own."""
    lengths = np.zeros(len(records), dtype=np.int64)
    token_parts, mask_parts = [], []
    progress = Progress("encode", len(records))
    for start in range(0, len(records), ENCODE_BATCH_RECORDS):
        chunk = records[start : start + ENCODE_BATCH_RECORDS]
        pieces = []
        for r in chunk:
            try:
                pieces.append(record_segments(fmt, r))
            except ValueError as e:  # a chat template that cannot be split into turns
                raise ConfigError(f"tokenize: record {r['key']}: {e}") from e
        encoded = tok.encode_batch_fast([text for segs in pieces for text, _ in segs], add_special_tokens=False)
        piece_lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        total = int(piece_lengths.sum())
        token_parts.append(np.fromiter(itertools.chain.from_iterable(e.ids for e in encoded), dtype=np.int32, count=total))
        losses = np.fromiter((loss for segs in pieces for _, loss in segs), dtype=np.uint8, count=len(encoded))
        mask_parts.append(np.repeat(losses, piece_lengths))
        # A record's length is its pieces' summed: the cumulative piece lengths at its pieces' bounds, differenced.
        bounds = np.concatenate(([0], np.cumsum([len(segs) for segs in pieces], dtype=np.int64)))
        lengths[start : start + len(chunk)] = np.diff(np.concatenate(([0], np.cumsum(piece_lengths)))[bounds])
        progress.advance(len(chunk))
    offsets = np.zeros(len(records) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    cat = lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt)  # noqa: E731
    return offsets, cat(token_parts, np.int32), cat(mask_parts, np.uint8)


def vocabulary_tokenizer(records, cfg: TokenizeConfig) -> Tokenizer:
    """A tokenizer trained on the records' texts, fed as the trainer pulls them, with progress events: on a large
    corpus counting the words takes minutes, and a trainer silent for the activity's heartbeat timeout is taken
    for a hung one."""
    progress = Progress("vocabulary", len(records))

    def texts():
        for r in records:
            progress.advance()
            yield from vocabulary_texts(r)

    return train_tokenizer(texts(), cfg.vocab_size, cfg.min_frequency)


def run(raw: dict) -> None:
    cfg = from_dict(TokenizeConfig, raw, "tokenize")
    records = read_records(cfg.input)
    emit("started", command="tokenize", device="cpu", step=0, total_steps=0, params=0)
    if cfg.tokenizer:
        tok, fmt = load_base_tokenizer(cfg.tokenizer)
    else:
        fmt = PLAIN
        tok = vocabulary_tokenizer(read_records(cfg.vocabulary_input) if cfg.vocabulary_input else records, cfg)
    os.makedirs(cfg.output_dir, exist_ok=True)
    tok_path = os.path.join(cfg.output_dir, "tokenizer.json")
    tok.save(tok_path + ".tmp")
    os.replace(tok_path + ".tmp", tok_path)
    if not cfg.encode:
        emit("finished", command="tokenize", records=len(records), tokens=0, vocab_size=tok.get_vocab_size())
        return
    offsets, tokens, mask = encode_records(tok, records, fmt)
    shard = Shard([r["key"] for r in records], offsets, tokens, mask, tok.get_vocab_size(), tok.token_to_id(fmt.end))
    write_shard(os.path.join(cfg.output_dir, "encoded.shard"), shard)
    log.info("tokenized %d records into %d tokens, vocab %d", len(records), len(shard.tokens), shard.vocab_size)
    emit("finished", command="tokenize", records=len(records), tokens=int(len(shard.tokens)), vocab_size=shard.vocab_size)
