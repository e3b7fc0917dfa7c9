"""The model side shared by every command: the prompt template, the tiny GPT-2 (or a base model's architecture),
LoRA adapters, tokenizer loading, saving a Hugging Face model directory plus a reproducible tar, loading either
back, device choice and greedy decoding.

Nothing here may reach a model hub: models are built from configs and tokenizers from local files.
"""

import os

# Set before transformers is imported anywhere: the trainer must never try the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import copy  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast  # noqa: E402

from .events import ConfigError, log  # noqa: E402
from .template import EOS, PLAIN, ChatFormat, read_chat_format, tokenizer_config_fields  # noqa: E402

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


# --- devices --------------------------------------------------------------------------------------------------


def setup_threads() -> None:
    """TEMPERED_NUM_THREADS pins torch's intra-op threads; by default torch uses one per physical core."""
    n = os.environ.get("TEMPERED_NUM_THREADS")
    if n:
        torch.set_num_threads(int(n))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        # Not retryable: GPU work is routed to GPU workers, so a worker without one that got it would fail the
        # same way on every attempt; the activity must surface the mismatch rather than burn retries on it.
        raise ConfigError("field 'device' is \"cuda\" but no CUDA device is visible to this worker "
                          "(torch.cuda.is_available() is false); use \"auto\" or \"cpu\", or run on a GPU worker")
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, plain fp32 on CPU (CONTRACT.md: `device`)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


# --- tokenizer ------------------------------------------------------------------------------------------------


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


# --- building, saving and loading models ----------------------------------------------------------------------


def model_args_from(n_layer: int, n_head: int, n_embd: int, context_length: int, vocab_size: int, eos_id: int) -> dict:
    return dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, context_length=context_length, vocab_size=vocab_size, eos_id=eos_id)


def model_args_from_config(config, vocab_size: int, eos_id: int) -> dict:
    """`model_args` of a base model: its whole config (so a checkpoint rebuilds the architecture without the base
    directory) plus the keys the sft loop reads. Path-like and version keys are dropped: they differ between two
    stagings of the same base, and resume compares model_args."""
    cfg = {k: v for k, v in config.to_dict().items() if not k.startswith("_") and k not in ("transformers_version", "dtype", "torch_dtype")}
    return dict(config=cfg, context_length=context_length(config), vocab_size=vocab_size, eos_id=eos_id)


def context_length(config) -> int:
    """The longest sequence the model takes: GPT-2 calls it n_positions, most other architectures max_position_embeddings."""
    n = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if not n:
        raise ConfigError(f"model config ({config.model_type}) states no context length (n_positions / max_position_embeddings)")
    return int(n)


def build_config(args: dict):
    """The transformers config for `model_args` (the dict stored in every checkpoint)."""
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


def build_model(args: dict):
    """A fresh causal LM from `model_args`: the tiny GPT-2, or a base model's architecture with fresh weights."""
    config = build_config(args)
    if "config" in args:
        return AutoModelForCausalLM.from_config(config)
    return GPT2LMHeadModel(config)


def count_params(model, trainable: bool = False) -> int:
    # Tied embeddings are one tensor, so parameters() already counts them once.
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


# --- LoRA -----------------------------------------------------------------------------------------------------

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


def lora_settings(lora: dict, model_type: str = "gpt2") -> dict:
    """The config's `lora` object with its defaults filled in (validated by the command's config); the target
    modules default by architecture (LORA_TARGETS)."""
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


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def save_adapter_dir(peft_model, out_dir: str) -> str:
    """Write exactly ADAPTER_FILES (PEFT's format): load with `PeftModel.from_pretrained(base, out_dir)`."""
    os.makedirs(out_dir, exist_ok=True)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    for name in os.listdir(out_dir):  # PEFT adds a README model card
        if name not in ADAPTER_FILES:
            path = os.path.join(out_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    # PEFT records the base's path, here a staging directory that means nothing elsewhere and would make the
    # same adapter give different bytes; the base is whatever the run started from (CONTRACT.md).
    config_path = os.path.join(out_dir, "adapter_config.json")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    config["base_model_name_or_path"] = None
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    return out_dir


def save_model_dir(model, tokenizer_path, out_dir: str, tokenizer_json: str = None, fmt: ChatFormat = PLAIN) -> str:
    """Write exactly MODEL_FILES into out_dir, loadable with `from_pretrained(out_dir)` and no network.

    The tokenizer comes from `tokenizer_path` (file or directory) or, when that is None, from `tokenizer_json`;
    tokenizer_config.json carries the chat format (template and end token), so the model is served with the
    template it was trained with.
    """
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    # save_pretrained adds generation_config.json; the contract's model directory is exactly MODEL_FILES.
    for name in os.listdir(out_dir):
        if name not in MODEL_FILES:
            path = os.path.join(out_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    if tokenizer_path is None:
        with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(tokenizer_json)
    else:
        if os.path.isdir(tokenizer_path):
            tokenizer_path = os.path.join(tokenizer_path, "tokenizer.json")
        shutil.copyfile(tokenizer_path, os.path.join(out_dir, "tokenizer.json"))
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": EOS,
        "bos_token": EOS,
        "model_max_length": context_length(model.config),
        "clean_up_tokenization_spaces": False,
        **tokenizer_config_fields(fmt),
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tok_config, f, indent=2, sort_keys=True)
        f.write("\n")
    return out_dir


def write_model_tar(model_dir: str, tar_path: str) -> str:
    """An uncompressed tar of the model (or adapter) files with sorted names, zero mtimes and root ownership, so the same
    model always gives the same bytes (and digest). Written to a temp name, then renamed."""
    tmp = f"{tar_path}.tmp-{os.getpid()}"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(model_dir)):
            with open(os.path.join(model_dir, name), "rb") as f:
                data = f.read()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, tar_path)
    return tar_path


class unpacked_model:
    """A model directory: the given one, or a temporary extraction of a model.tar removed on exit."""

    def __init__(self, path: str):
        self.path, self.tmp = path, None

    def __enter__(self) -> str:
        if os.path.isdir(self.path):
            return self.path
        if not os.path.isfile(self.path):
            raise ConfigError(f"model not found: {self.path}")
        if not tarfile.is_tarfile(self.path):
            raise ConfigError(f"model {self.path} is neither a directory nor a tar file")
        self.tmp = tempfile.mkdtemp(prefix="tempered-model-")
        with tarfile.open(self.path) as tar:
            tar.extractall(self.tmp, filter="data")  # 'data' refuses absolute paths and links out of the folder
        return self.tmp

    def __exit__(self, *exc):
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def load_pretrained(path: str, device: torch.device):
    """(model, tokenizer) from a model directory or an uncompressed model.tar; the model is in eval mode."""
    with unpacked_model(path) as model_dir:
        missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not os.path.isfile(os.path.join(model_dir, f))]
        if missing:
            raise ConfigError(f"model {path} lacks {', '.join(missing)}")
        model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
        tokenizer = load_tokenizer(model_dir)
    log.info("loaded model from %s", path)
    return model.to(device).eval(), tokenizer


def weights_digest(model_dir: str) -> str:
    """sha256 of a model directory's model.safetensors: names the exact base weights a LoRA checkpoint needs."""
    import hashlib

    h = hashlib.sha256()
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def load_base_weights(base_model: str, expected_digest: str = None):
    """(model on CPU in train mode's dtype, weights digest) of a base model directory or model.tar; with
    `expected_digest`, a different base is a bad-input error (an adapter only fits the weights it was trained on)."""
    with unpacked_model(base_model) as src:
        digest = weights_digest(src)
        if expected_digest is not None and digest != expected_digest:
            raise ConfigError(f"field 'base_model' ({base_model}) has weights {digest[:12]}, but the checkpoint's adapter "
                              f"was trained on {expected_digest[:12]}; pass the base the run started from")
        model, tokenizer = load_pretrained(src, torch.device("cpu"))
    return model, tokenizer, digest


_base_cache: dict = {}  # the last base model a LoRA checkpoint was loaded onto: {path, model, digest}


def load_checkpoint_model(path: str, device: torch.device, merge: bool = True, base_model: str = None):
    """(model, checkpoint dict) from an sft checkpoint file.

    A LoRA checkpoint holds the adapter (`adapter`) and either the frozen base weights (`model`, for a model
    built from scratch) or, for a LoRA run over a `base_model`, only that base's weights digest (`base_sha256`):
    the base is stored once per run, not in every checkpoint, and `base_model` must then be given. With `merge`
    the adapter is folded into the base and a plain model comes back, otherwise the PEFT model.
    """
    ckpt = load_checkpoint(path)
    if ckpt["model"] is None:
        if not base_model:
            raise ConfigError(f"field 'base_model' is required: checkpoint {path} holds a LoRA adapter whose base "
                              f"(weights {str(ckpt.get('base_sha256'))[:12]}) is stored once per run, not in the checkpoint")
        if _base_cache.get("path") != base_model:
            # Loaded (unpacked, digested) once per process: eval scores every checkpoint of a run on the same base.
            base, _, digest = load_base_weights(base_model)
            _base_cache.update(path=base_model, model=base, digest=digest)
        if _base_cache["digest"] != ckpt.get("base_sha256"):
            raise ConfigError(f"field 'base_model' ({base_model}) has weights {_base_cache['digest'][:12]}, but the checkpoint's "
                              f"adapter was trained on {str(ckpt.get('base_sha256'))[:12]}; pass the base the run started from")
        # A copy: merging an adapter changes the weights it is merged into.
        model = copy.deepcopy(_base_cache["model"])
    else:
        model = build_model(ckpt["model_args"])
        model.load_state_dict(ckpt["model"])
    if ckpt.get("lora"):
        model = apply_lora(model, ckpt["lora"])
        load_adapter_state(model, ckpt["adapter"])
        if merge:
            model = model.merge_and_unload()
    return model.to(device).eval(), ckpt


def checkpoint_format(ckpt: dict) -> ChatFormat:
    """The chat format a checkpoint was trained with (the plain one for checkpoints older than the field)."""
    return ChatFormat.from_dict(ckpt.get("chat_format"))


def checkpoint_tokenizer(ckpt: dict, tokenizer_path, where: str):
    """The tokenizer for a checkpoint: the given file, else the one the checkpoint carries (sft stores it); its
    chat format is the checkpoint's."""
    if tokenizer_path:
        path = os.path.join(tokenizer_path, "tokenizer.json") if os.path.isdir(tokenizer_path) else tokenizer_path
        return tokenizer_from_json(read_tokenizer_json(path), path, checkpoint_format(ckpt))
    if ckpt.get("tokenizer_json"):
        return tokenizer_from_json(ckpt["tokenizer_json"], f"the tokenizer stored in {where}", checkpoint_format(ckpt))
    raise ConfigError(f"field 'tokenizer' is required: checkpoint {where} carries no tokenizer")


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError(f"checkpoint not found: {path}")
    # weights_only=False: our own files carry python/numpy RNG states, which the safe unpickler refuses.
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise ConfigError(f"{path} is not a tempered sft checkpoint")
    return ckpt


# --- decoding -------------------------------------------------------------------------------------------------


@torch.no_grad()
def generate(model, prompts, max_new_tokens: int, eos_id: int, temperature: float = 0.0, batch_size: int = 32, progress=None):
    """Decode each prompt (a list of token ids); returns (new token ids without eos, finished_by_eos) per prompt.

    Greedy when temperature is 0. Prompts of equal length are batched together, so no padding is ever needed
    and a batched answer is exactly the answer the prompt would get alone.
    """
    device = next(model.parameters()).device
    ctx = context_length(model.config)
    results = [None] * len(prompts)
    by_len = {}
    for i, p in enumerate(prompts):
        p = list(p)[-(ctx - 1):]  # keep room for at least one new token
        by_len.setdefault(len(p), []).append((i, p))
    for length, items in sorted(by_len.items()):
        for s in range(0, len(items), batch_size):
            chunk = items[s : s + batch_size]
            x = torch.tensor([p for _, p in chunk], dtype=torch.long, device=device)
            steps = min(max_new_tokens, ctx - length)
            out = [[] for _ in chunk]
            done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
            past = None
            with autocast(device):
                for _ in range(steps):
                    o = model(input_ids=x, past_key_values=past, use_cache=True)
                    past, logits = o.past_key_values, o.logits[:, -1, :].float()
                    if temperature and temperature > 0:
                        nxt = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1).squeeze(1)
                    else:
                        nxt = logits.argmax(dim=-1)
                    for j, t in enumerate(nxt.tolist()):
                        if not done[j]:
                            out[j].append(t)
                    done |= nxt == eos_id
                    if bool(done.all()):
                        break
                    x = nxt[:, None]
            for (i, _), toks in zip(chunk, out):
                finished = bool(toks) and toks[-1] == eos_id
                results[i] = (toks[:-1] if finished else toks, finished)
            if progress is not None:  # an events.Progress: keeps a long generation visibly alive
                progress.advance(len(chunk))
    return results
