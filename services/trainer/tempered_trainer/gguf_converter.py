"""Runs llama.cpp's convert_hf_to_gguf.py (the maintained HF -> GGUF converter, as the llama-cpp-python sdist vendors
it) in a process of its own: `python -m tempered_trainer.gguf_converter CONVERTER.py MODEL_DIR --outfile F --outtype T`.

One thing is added to the converter: it names a BPE tokenizer's pre-tokenizer by hashing the ids a test string
encodes to, so a byte-level BPE trained here (the tiny GPT-2s, with their own vocabulary) is unknown to it although
its pre-tokenizer is exactly GPT-2's (`tokenizers`' ByteLevel with its regex, no normalizer). For such a
tokenizer alone, and only when the hash is unknown, the pre-tokenizer is declared `gpt-2`; `gguf` then checks that
llama.cpp encodes a prompt to the same ids as the model's own tokenizer, so a wrong claim cannot pass unseen.
"""

import json
import os
import runpy
import sys


def gpt2_pre_tokenizer(model_dir: str) -> bool:
    """True when the model's tokenizer.json pre-tokenizes exactly as GPT-2 does."""
    with open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    pre = tok.get("pre_tokenizer") or {}
    return (tok.get("normalizer") is None and pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
            and not pre.get("add_prefix_space", False) and (tok.get("model") or {}).get("type") == "BPE")


def main(argv) -> None:
    converter, model_dir, rest = argv[0], argv[1], argv[2:]
    here = os.path.dirname(os.path.abspath(converter))
    # As the converter itself does: its own `conversion` package and gguf-py, the versions it was released with.
    sys.path[:0] = [here, os.path.join(here, "gguf-py")]
    from conversion import base  # noqa: PLC0415 - importable only once the converter's folder is on the path

    original = base.TextModel.get_vocab_base_pre
    byte_level = gpt2_pre_tokenizer(model_dir)

    def get_vocab_base_pre(self, tokenizer):
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if byte_level:
                return "gpt-2"
            raise

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre
    sys.argv = [converter, model_dir, *rest]
    runpy.run_path(converter, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
