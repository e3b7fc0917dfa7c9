"""How a command's JSON config becomes its dataclass: one generic parser whose errors name the field.

Each command declares its config as a dataclass beside its code (`SFTConfig` in sft.py, `DPOConfig` in dpo.py,
and so on, as TRL pairs `DPOConfig` with `DPOTrainer`) and parses it with `from_dict`. The annotations are the
schema: `from_dict` refuses unknown fields, missing fields and values of the wrong type, inside nested objects
(TypedDicts such as `ModelShape`) and lists too. Rules about values (ranges, "exactly one of") are the
dataclass's own `__post_init__`, written with `require`. Nothing is converted: the dataclass holds the JSON
values as they came, so a config written back (a checkpoint's `config`) is the one that was given.

Also here: the field types several commands share (`Device`, `ModelShape`) and the JSONL reader of their inputs.
"""

import dataclasses
import json
import types
import typing
from typing import Literal, TypedDict

from .events import ConfigError

# CONTRACT.md, `device`: "auto" is CUDA when visible, else CPU (devices.resolve_device).
Device = Literal["auto", "cpu", "cuda"]


class ModelShape(TypedDict):
    """`model` of sft and reward: a tiny GPT-2 built from scratch (architecture.model_args_from)."""

    n_layer: int
    n_head: int
    n_embd: int
    context_length: int


def require(ok: bool, command: str, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{command} config: field '{field}' {message}")


def from_dict(cls, data, command: str):
    """Build the dataclass `cls` from a JSON object; anything that does not fit its annotations is a ConfigError
    naming the field (`model.n_head`, `checkpoints[2]` inside objects and lists)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{command} config must be a JSON object")
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    _check_object(data, typing.get_type_hints(cls), required, "", command)
    return cls(**data)


def _check_object(data: dict, hints: dict, required, prefix: str, command: str) -> None:
    unknown = sorted(set(data) - set(hints))
    if unknown:
        # A nested object has a handful of keys, so the error lists them; a command's own fields are in CONTRACT.md.
        expected = f" (expected {', '.join(hints)})" if prefix else ""
        raise ConfigError(f"{command} config: unknown field '{prefix}{unknown[0]}'{expected}")
    for name, annotation in hints.items():
        if name in data:
            _check(data[name], annotation, prefix + name, command)
        elif name in required:
            raise ConfigError(f"{command} config: field '{prefix}{name}' is required")


# The JSON scalars: what each annotation accepts, and how an error names it. bool is a subclass of int in Python,
# so true is not an integer here; JSON writes 3.0 as 3, so an integer is a fine number.
_SCALARS = {
    bool: ("a boolean", "booleans", lambda v: isinstance(v, bool)),
    int: ("an integer", "integers", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("a number", "numbers", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    str: ("a string", "strings", lambda v: isinstance(v, str)),
}


def _check(value, annotation, path: str, command: str, nullable: bool = False) -> None:
    """Raise a ConfigError naming `path` unless `value` fits `annotation`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)

    def wrong(expected: str) -> ConfigError:
        null = " (or null)" if nullable else ""
        return ConfigError(f"{command} config: field '{path}' must be {expected}{null}, got {value!r}")

    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:  # only Optional[X] is declared; anything else would need its own error wording
            raise TypeError(f"config field '{path}': unsupported annotation {annotation!r}")
        if value is None:
            return
        return _check(value, options[0], path, command, nullable=True)
    if origin is Literal:
        # `type(...) is`: 1 == True, and a Literal of strings must not take a number that happens to compare equal.
        if not any(value == a and type(value) is type(a) for a in args):
            raise wrong(f"one of {', '.join(str(a) for a in args)}")
        return
    if annotation in _SCALARS:
        name, _, fits = _SCALARS[annotation]
        if not fits(value):
            raise wrong(name)
        return
    if typing.is_typeddict(annotation):
        if not isinstance(value, dict):
            raise wrong("an object")
        _check_object(value, typing.get_type_hints(annotation), annotation.__required_keys__, path + ".", command)
        return
    if annotation is list or origin is list:
        if not isinstance(value, list):
            raise wrong(f"a list of {_SCALARS[args[0]][1]}" if args and args[0] in _SCALARS else "a list")
        for i, item in enumerate(value):
            if args:
                _check(item, args[0], f"{path}[{i}]", command)
        return
    # An annotation this parser does not know would otherwise accept anything: fail where the config is declared.
    raise TypeError(f"config field '{path}': unsupported annotation {annotation!r}")


def check_model_source(command: str, model, base_model, tokenizer) -> None:
    """Exactly one of `model` (a ModelShape, built from scratch, which needs `tokenizer`) and `base_model` (a
    model directory or model.tar); shared by every command that starts from either. Types are already checked."""
    need = lambda ok, field, msg: require(ok, command, field, msg)  # noqa: E731
    need((model is None) != (base_model is None), "model", "or 'base_model' must be given, exactly one of them")
    if model is None:
        need(bool(base_model), "base_model", "must be a non-empty path")
        return
    for key in ModelShape.__annotations__:
        need(model[key] >= 1, f"model.{key}", f"must be a positive integer, got {model[key]!r}")
    need(model["n_embd"] % model["n_head"] == 0, "model.n_embd", f"({model['n_embd']}) must be a multiple of model.n_head ({model['n_head']})")
    need(model["context_length"] >= 2, "model.context_length", "must be at least 2")
    need(bool(tokenizer), "tokenizer", "is required with 'model' (a model built from scratch has no tokenizer of its own)")


def load_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e}") from e


def as_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def read_jsonl(path: str, fields, check=None) -> list:
    """The rows of a JSONL file, each a JSON object with a string in every one of `fields` (others are kept);
    `check(row)`, when given, returns why a row is unusable (None when it is fine)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path} line {n}: not JSON ({e})") from e
            for field in fields:
                if not isinstance(r, dict) or not isinstance(r.get(field), str):
                    raise ConfigError(f"{path} line {n}: field '{field}' must be a string")
            why = check(r) if check else None
            if why:
                raise ConfigError(f"{path} line {n}: {why}")
            rows.append(r)
    if not rows:
        raise ConfigError(f"{path} has no rows")
    return rows
