"""Loading a command's JSON config into its dataclass, with errors that name the offending field.

Each command declares a dataclass (see `sft_config.py`, `dpo_config.py` and the small ones next to their
commands). `from_dict` rejects unknown and missing fields and checks the basic types from the annotations; the
dataclass's own `__post_init__` checks ranges and cross-field rules via `require`.
"""

import dataclasses
import json
import typing

from .events import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def require(ok: bool, command: str, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{command} config: field '{field}' {message}")


def _type_ok(value, annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        # JSON writes 3.0 as 3, so ints are fine where floats are expected.
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation is dict or origin is dict:
        return isinstance(value, dict)
    return True


def _type_name(annotation) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if args:
        return " or ".join(_type_name(a) for a in args) + " (or null)"
    return {int: "an integer", float: "a number", str: "a string", bool: "a boolean", dict: "an object"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def from_dict(cls, data, command: str):
    """Build `cls` from a JSON object: unknown fields, missing fields and wrong types are ConfigErrors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{command} config must be a JSON object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{command} config: unknown field '{unknown[0]}'")
    for name, f in fields.items():
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if name not in data:
            if not has_default:
                raise ConfigError(f"{command} config: field '{name}' is required")
            continue
        if not _type_ok(data[name], hints[name]):
            raise ConfigError(f"{command} config: field '{name}' must be {_type_name(hints[name])}, got {data[name]!r}")
    return cls(**data)


def load_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e}") from e


def check_device(command: str, device: str) -> None:
    require(device in DEVICES, command, "device", f"must be one of {', '.join(DEVICES)}, got {device!r}")


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
