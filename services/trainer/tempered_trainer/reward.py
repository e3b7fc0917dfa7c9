"""`reward`: a reward model trained on preference pairs with TRL's RewardTrainer (Bradley-Terry loss).

The reward model is a sequence classifier with one output (AutoModelForSequenceClassification, num_labels=1):
the transformer of `base_model` (typically the sft model) or of a tiny GPT-2 built from `model`, plus a fresh
linear `score` head. It reads the text `prompt + "\n" + response` (the tokenize template) and scores it at the
last token that is not `<|endoftext|>`; `rl` scores its samples the same way. Training pushes
score(chosen) - score(rejected) up through -log sigmoid of it. The result is written like `export` does
(model/ + model.tar) and loads back with AutoModelForSequenceClassification.
"""

import dataclasses
import os
from typing import Optional

import torch

from .architecture import build_config, context_length, count_params, model_args_from
from .config import Device, ModelShape, check_model_source, from_dict, read_jsonl, require
from .devices import resolve_device, setup_threads
from .dpo import read_preferences
from .events import ConfigError, emit, log, stdout_to_stderr
from .model_files import save_model_dir, unpacked_model, write_model_tar
from .template import read_chat_format
from .tokenizer import chat_format_of, read_tokenizer_json, tokenizer_from_json
from .trl_common import common_args, quiet_libraries, scratch_dir, step_events


@dataclasses.dataclass
class RewardConfig:
    """The `reward` command's config. Named like TRL's own `RewardConfig`, which `run` builds from it (as
    `trl.RewardConfig`)."""

    preferences: str  # JSONL of {prompt, chosen, rejected}
    output_dir: str
    steps: int
    batch_size: int
    learning_rate: float
    seed: int
    # Exactly one of `base_model` (a model directory or model.tar, usually the sft model: the reward model starts
    # from what the policy knows) and `model` (a tiny GPT-2 from scratch, which needs `tokenizer`).
    base_model: Optional[str] = None
    model: Optional[ModelShape] = None
    tokenizer: Optional[str] = None
    device: Device = "auto"

    def __post_init__(self):
        need = lambda ok, field, msg: require(ok, "reward", field, msg)  # noqa: E731
        check_model_source("reward", self.model, self.base_model, self.tokenizer)
        if self.base_model is not None:
            need(self.tokenizer is None, "tokenizer", "must be left out with 'base_model' (the model's own tokenizer is used)")
        for field in ("preferences", "output_dir"):
            need(bool(getattr(self, field)), field, "must be a non-empty path")
        need(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        need(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        need(0 < self.learning_rate <= 1, "learning_rate", f"must be in (0, 1], got {self.learning_rate}")
        need(self.seed >= 0, "seed", f"must be at least 0, got {self.seed}")


def build_reward_model(cfg: RewardConfig):
    """(model, tokenizer, tokenizer.json text): a transformer with a fresh scalar head, seeded by cfg.seed."""
    from transformers import AutoModelForSequenceClassification, GPT2ForSequenceClassification

    torch.manual_seed(cfg.seed)  # the new score head is drawn from torch's RNG
    if cfg.model is not None:
        tokenizer_json = read_tokenizer_json(cfg.tokenizer)
        tokenizer = tokenizer_from_json(tokenizer_json, f"tokenizer {cfg.tokenizer}")
        args = model_args_from(**cfg.model, vocab_size=len(tokenizer), eos_id=tokenizer.eos_token_id)
        config = build_config(args)
        config.num_labels = 1
        return GPT2ForSequenceClassification(config), tokenizer, tokenizer_json
    with unpacked_model(cfg.base_model) as src:
        missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not os.path.isfile(os.path.join(src, f))]
        if missing:
            raise ConfigError(f"reward: base_model {cfg.base_model} lacks {', '.join(missing)}")
        tokenizer_json = read_tokenizer_json(src)
        fmt = read_chat_format(src)  # pairs are rendered as the base model's own conversations
        # A causal LM's transformer weights load into the classifier; its lm_head is dropped, `score` is new.
        model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, local_files_only=True, dtype=torch.float32)
    return model, tokenizer_from_json(tokenizer_json, f"{cfg.base_model} tokenizer.json", fmt), tokenizer_json


def run(raw: dict) -> None:
    cfg = from_dict(RewardConfig, raw, "reward")
    setup_threads()
    device = resolve_device(cfg.device)
    read_jsonl(cfg.preferences, ("prompt", "chosen", "rejected"))  # a bad file fails before the model loads

    import datasets
    import trl

    quiet_libraries()
    with scratch_dir(cfg.output_dir) as scratch, stdout_to_stderr():
        model, tokenizer, tokenizer_json = build_reward_model(cfg)
        # The score is read at the last token that is not the pad token; padding is <|endoftext|>, so the score
        # sits on the response's last real token, with or without the eos the response ends with.
        model.config.pad_token_id = tokenizer.eos_token_id
        model.train()
        dataset = datasets.Dataset.from_list(read_preferences(cfg.preferences, chat_format_of(tokenizer)))
        args = trl.RewardConfig(
            **common_args(device, scratch, cfg.steps, cfg.batch_size, cfg.learning_rate, cfg.seed),
            per_device_eval_batch_size=max(cfg.batch_size, 32),
            # Pairs longer than the context are dropped (TRL filters them); none may be silently truncated.
            max_length=context_length(model.config),
        )
        trainer = trl.RewardTrainer(model=model, args=args, train_dataset=dataset, eval_dataset=dataset, processing_class=tokenizer)
        if len(trainer.train_dataset) == 0:
            raise ConfigError(f"reward: no preference pair of {cfg.preferences} fits the model's context length ({args.max_length} tokens)")
        steps = step_events(trainer, {"accuracy": "accuracy", "margin": "margin"})
        emit("started", command="reward", device=device.type, step=0, total_steps=cfg.steps, params=count_params(model))
        before = trainer.evaluate()
        trainer.train()
        after = trainer.evaluate()
        log.info("reward model on the preference pairs: before %s, after %s", before, after)

        tuned = trainer.accelerator.unwrap_model(trainer.model).to("cpu").float().eval()
        model_dir = save_model_dir(tuned, None, os.path.join(cfg.output_dir, "model"), tokenizer_json=tokenizer_json, fmt=chat_format_of(tokenizer))
    model_tar = write_model_tar(model_dir, os.path.join(cfg.output_dir, "model.tar"))
    emit("finished", command="reward", step=int(trainer.state.global_step), final_loss=steps.logs[-1]["loss"] if steps.logs else None,
         reward_accuracy=after.get("eval_accuracy"), reward_loss=after.get("eval_loss"),
         initial_reward_accuracy=before.get("eval_accuracy"), initial_reward_loss=before.get("eval_loss"),
         pairs=len(trainer.train_dataset), model_dir=model_dir, model_tar=model_tar)
