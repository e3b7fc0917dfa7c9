"""Building a causal LM from `model_args`, the dict every checkpoint stores so it can rebuild its architecture:
the tiny GPT-2 of a config's `model`, or a base model's own architecture. Nothing here reaches a model hub:
architectures come from configs, weights from local files (model_files.py)."""

from typing import Required, TypedDict

import transformers
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from .events import ConfigError


class ModelArgs(TypedDict, total=False):
    """A checkpoint's `model_args` (CONTRACT.md, `sft`): one of two shapes, both with the keys the sft loop reads.

    For a model built from `model`: n_layer, n_head, n_embd (and context_length). For a base model: `config`,
    its whole transformers config, so a checkpoint rebuilds it without the base's directory.
    """

    n_layer: int
    n_head: int
    n_embd: int
    config: dict
    context_length: Required[int]
    vocab_size: Required[int]
    eos_id: Required[int]


def model_args_from(n_layer: int, n_head: int, n_embd: int, context_length: int, vocab_size: int, eos_id: int) -> ModelArgs:
    return ModelArgs(n_layer=n_layer, n_head=n_head, n_embd=n_embd, context_length=context_length, vocab_size=vocab_size, eos_id=eos_id)


def model_args_from_config(config, vocab_size: int, eos_id: int) -> ModelArgs:
    """`model_args` of a base model: its whole config plus the keys the sft loop reads. Path-like and version keys
    are dropped: they differ between two stagings of the same base, and resume compares model_args."""
    cfg = {k: v for k, v in config.to_dict().items() if not k.startswith("_") and k not in ("transformers_version", "dtype", "torch_dtype")}
    return ModelArgs(config=cfg, context_length=context_length(config), vocab_size=vocab_size, eos_id=eos_id)


def context_length(config) -> int:
    """The longest sequence the model takes: GPT-2 calls it n_positions, most other architectures max_position_embeddings."""
    n = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if not n:
        raise ConfigError(f"model config ({config.model_type}) states no context length (n_positions / max_position_embeddings)")
    return int(n)


def build_config(args: ModelArgs):
    """The transformers config for `model_args`."""
    if "config" in args:  # a base model's architecture, as it was given
        return transformers.AutoConfig.for_model(**args["config"])
    return GPT2Config(
        vocab_size=args["vocab_size"],
        n_positions=args["context_length"],
        n_embd=args["n_embd"],
        n_layer=args["n_layer"],
        n_head=args["n_head"],
        # No dropout: the models are tiny and the data small, and it keeps eval and serve outputs exact.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=args["eos_id"],
        eos_token_id=args["eos_id"],
        pad_token_id=args["eos_id"],
    )


def build_model(args: ModelArgs):
    """A fresh causal LM from `model_args`: the tiny GPT-2, or a base model's architecture with fresh weights."""
    config = build_config(args)
    if "config" in args:
        return AutoModelForCausalLM.from_config(config)
    return GPT2LMHeadModel(config)


def count_params(model, trainable: bool = False) -> int:
    # Tied embeddings are one tensor, so parameters() already counts them once.
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)
