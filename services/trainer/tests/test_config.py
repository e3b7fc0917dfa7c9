"""config.from_dict, the one parser of every command's config: each command pairs with one config dataclass
whose annotations the parser fully checks, and a bad value is refused with the field's path and the reason."""

import dataclasses
import importlib
import typing

import pytest

from tempered_trainer.__main__ import COMMANDS
from tempered_trainer.config import _check, from_dict
from tempered_trainer.eval import EvalConfig
from tempered_trainer.events import ConfigError
from tempered_trainer.sft import SFTConfig


def command_configs():
    """(command, its config dataclass): the one `...Config` dataclass its module defines."""
    for command, name in sorted(COMMANDS.items()):
        module = importlib.import_module(f"tempered_trainer.{name}")
        classes = [v for k, v in vars(module).items()
                   if k.endswith("Config") and dataclasses.is_dataclass(v) and v.__module__ == module.__name__]
        assert len(classes) == 1, (command, classes)
        yield command, classes[0]


@pytest.mark.parametrize("command, cls", list(command_configs()))
def test_every_field_of_every_command_config_is_type_checked(command, cls):
    # A value of no JSON type fits no annotation the parser knows: each field must refuse it with a ConfigError
    # naming the field. An annotation the parser does not know is a TypeError instead, never silently accepted.
    for name, annotation in typing.get_type_hints(cls).items():
        with pytest.raises(ConfigError, match=f"field '{name}' must be"):
            _check(object(), annotation, name, command)


SFT = {"train_shard": "s", "output_dir": "o", "steps": 1, "batch_size": 1, "learning_rate": 0.1, "warmup_steps": 0,
       "weight_decay": 0, "checkpoint_every": 1, "seed": 0, "tokenizer": "t",
       "model": {"n_layer": 1, "n_head": 2, "n_embd": 4, "context_length": 8}}


@pytest.mark.parametrize("change, message", [
    ({"extra": 1}, "unknown field 'extra'"),
    ({"steps": None}, "field 'steps' must be an integer, got None"),
    ({"steps": True}, "field 'steps' must be an integer, got True"),  # JSON true is not 1
    ({"steps": 2.0}, "field 'steps' must be an integer, got 2.0"),
    ({"learning_rate": "fast"}, "field 'learning_rate' must be a number, got 'fast'"),
    ({"gradient_checkpointing": 1}, "field 'gradient_checkpointing' must be a boolean, got 1"),
    ({"device": "tpu"}, "field 'device' must be one of auto, cpu, cuda, got 'tpu'"),
    ({"max_seq_length": "8"}, "field 'max_seq_length' must be an integer (or null), got '8'"),
    ({"model": [1]}, "field 'model' must be an object (or null), got [1]"),
    ({"model": {"n_layer": 1, "n_head": 2, "n_embd": 4}}, "field 'model.context_length' is required"),
    ({"model": {**SFT["model"], "n_head": "2"}}, "field 'model.n_head' must be an integer, got '2'"),
    ({"model": {**SFT["model"], "depth": 3}}, "unknown field 'model.depth' (expected n_layer, n_head, n_embd, context_length)"),
    ({"lora": {}}, "field 'lora.r' is required"),
    ({"lora": {"r": 2, "target_modules": "c_attn"}}, "field 'lora.target_modules' must be a list of strings, got 'c_attn'"),
    ({"lora": {"r": 2, "target_modules": ["c_attn", 7]}}, "field 'lora.target_modules[1]' must be a string, got 7"),
    ({"lora": {"r": 0}}, "field 'lora.r' must be a positive integer, got 0"),  # a value rule, from __post_init__
])
def test_sft_config_errors_name_the_field_and_the_reason(change, message):
    with pytest.raises(ConfigError) as e:
        from_dict(SFTConfig, {**SFT, **change}, "sft")
    assert str(e.value) == f"sft config: {message}"


def test_missing_fields_and_values_kept_as_given():
    with pytest.raises(ConfigError, match="^sft config: field 'seed' is required$"):
        from_dict(SFTConfig, {k: v for k, v in SFT.items() if k != "seed"}, "sft")
    with pytest.raises(ConfigError, match="^eval config must be a JSON object$"):
        from_dict(EvalConfig, ["shard"], "eval")
    # Nothing is converted: an integer stays an integer where a number is expected, a nested object a plain dict,
    # so the config a checkpoint stores is the one that was given.
    cfg = from_dict(SFTConfig, {**SFT, "lora": {"r": 2, "alpha": 4, "target_modules": ["c_attn"]}}, "sft")
    assert cfg.weight_decay == 0 and type(cfg.weight_decay) is int
    assert cfg.model == SFT["model"] and type(cfg.model) is dict and cfg.lora == {"r": 2, "alpha": 4, "target_modules": ["c_attn"]}
    assert from_dict(EvalConfig, {"shard": "s", "output_dir": "o", "checkpoints": ["a.pt", "b.pt"]}, "eval").targets() == ["a.pt", "b.pt"]
