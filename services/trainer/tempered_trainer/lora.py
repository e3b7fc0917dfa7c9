"""LoRA: the `lora` object of an sft config (its type, value rules and defaults) and applying it with PEFT, so
that only the adapter trains while the base stays frozen (CONTRACT.md, `sft`)."""

from typing import List, Optional, Required, TypedDict

from .config import require
from .events import ConfigError


class LoraSpec(TypedDict, total=False):
    """The config's `lora`; `lora_settings` fills in the defaults (the filled-in dict is a checkpoint's `lora`)."""

    r: Required[int]
    alpha: Optional[float]  # default r: the update is scaled by alpha / r
    dropout: float  # default 0
    target_modules: List[str]  # default by architecture: LORA_TARGETS


LORA_DEFAULTS = {"alpha": None, "dropout": 0.0, "target_modules": None}  # alpha None: same as r; targets by architecture

# The attention projections, as the LoRA paper and PEFT's own defaults adapt them, by transformers model_type.
# GPT-2 fuses q, k and v into c_attn; c_proj is every output projection (attention and MLP).
LORA_TARGETS = {
    "gpt2": ["c_attn", "c_proj"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "phi3": ["qkv_proj", "o_proj"],
}


def check_lora(command: str, lora: LoraSpec) -> None:
    """The value rules of `lora` (config.from_dict has checked its keys and types)."""
    need = lambda ok, field, msg: require(ok, command, field, msg)  # noqa: E731
    need(lora["r"] >= 1, "lora.r", f"must be a positive integer, got {lora['r']!r}")
    alpha = lora.get("alpha")
    need(alpha is None or alpha > 0, "lora.alpha", f"must be a positive number, got {alpha!r}")
    dropout = lora.get("dropout", 0.0)
    need(0 <= dropout < 1, "lora.dropout", f"must be a number in [0, 1), got {dropout!r}")
    if "target_modules" in lora:
        targets = lora["target_modules"]
        need(len(targets) > 0 and all(targets), "lora.target_modules", f"must be a non-empty list of module names, got {targets!r}")


def lora_settings(lora: LoraSpec, model_type: str = "gpt2") -> dict:
    """The config's `lora` object with its defaults filled in; the target modules default by architecture."""
    out = {**LORA_DEFAULTS, **lora}
    if out["alpha"] is None:
        out["alpha"] = out["r"]
    if out["target_modules"] is None:
        if model_type not in LORA_TARGETS:
            raise ConfigError(f"field 'lora.target_modules' has no default for architecture {model_type!r} "
                              f"(defaults exist for {', '.join(sorted(LORA_TARGETS))}); name the modules to adapt")
        out["target_modules"] = LORA_TARGETS[model_type]
    out["target_modules"] = list(out["target_modules"])
    return out


def apply_lora(model, lora: dict):
    """Wrap `model` in a PEFT LoRA model: base weights frozen, only the adapter (lora_A, lora_B) trains.

    lora_A is drawn from torch's RNG, so the caller seeds first (resume replays the same draws, then restores
    the checkpoint's RNG state).
    """
    from peft import LoraConfig, get_peft_model

    s = lora_settings(lora, model.config.model_type)
    config = LoraConfig(r=s["r"], lora_alpha=s["alpha"], lora_dropout=s["dropout"], target_modules=s["target_modules"], bias="none")
    try:
        return get_peft_model(model, config)
    except ValueError as e:  # no module matched target_modules: a config mistake, so say which names exist
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and not list(m.children())})
        raise ConfigError(f"field 'lora.target_modules' {s['target_modules']} matches no module of the model "
                          f"(leaf modules: {', '.join(names)}): {e}") from e


def adapter_state(peft_model) -> dict:
    """The adapter's weights only (PEFT's own key names, as in adapter_model.safetensors)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()}


def load_adapter_state(peft_model, state: dict) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(peft_model, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ConfigError(f"adapter weights do not fit the model: unexpected {unexpected[:3]}")
