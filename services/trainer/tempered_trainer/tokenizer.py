"""Loading a tokenizer.json (a file, a model directory's, or the text a checkpoint carries) as the transformers
tokenizer the torch-side commands use, with the model's chat format attached.

The `tokenize` command does not use this module: it works on the `tokenizers` library alone, without torch.
"""

import os

from transformers import PreTrainedTokenizerFast

from .events import ConfigError
from .template import EOS, PLAIN, ChatFormat, read_chat_format


def load_tokenizer(path: str) -> PreTrainedTokenizerFast:
    """A transformers tokenizer over tokenizer.json (`path` is the file or a model directory, whose chat format
    then comes with it); eos is the format's end token (CONTRACT.md)."""
    fmt = read_chat_format(path) if os.path.isdir(path) else PLAIN
    return tokenizer_from_json(read_tokenizer_json(path), path, fmt)


def read_tokenizer_json(path: str) -> str:
    """The text of tokenizer.json (`path` is the file or a directory holding it)."""
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(path):
        raise ConfigError(f"tokenizer file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return f.read()


def tokenizer_from_json(text: str, where: str = "tokenizer", fmt: ChatFormat = PLAIN) -> PreTrainedTokenizerFast:
    """Like load_tokenizer, from tokenizer.json's text (sft checkpoints carry it, so they need no separate file) and
    the model's chat format. The tokenizer's eos is the format's end token (generation stops there), its
    `chat_template` the format's template, so `chat_format_of` gives the format back; the pad token is
    `<|endoftext|>` where the vocabulary has it (padding is never attended to nor scored)."""
    from tokenizers import Tokenizer

    try:
        backend = Tokenizer.from_str(text)
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad input
        raise ConfigError(f"{where} is not a valid tokenizer.json: {e}") from e
    if backend.token_to_id(fmt.end) is None:
        raise ConfigError(f"{where} has no {fmt.end} token, which ends every answer")
    pad = EOS if backend.token_to_id(EOS) is not None else fmt.end
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=fmt.end, pad_token=pad)
    tok.chat_template = fmt.template
    return tok


def chat_format_of(tokenizer) -> ChatFormat:
    """The chat format a tokenizer from `tokenizer_from_json` was built with."""
    return ChatFormat(tokenizer.chat_template, tokenizer.eos_token) if tokenizer.chat_template else PLAIN
