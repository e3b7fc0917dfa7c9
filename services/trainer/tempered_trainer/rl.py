"""`rl`: online RL of a policy against a reward model, with a KL penalty to the starting policy, using TRL's
GRPOTrainer (TRL 1.x has no PPOTrainer).

Each step draws `batch_size` prompts, samples `num_generations` responses to each from the current policy,
scores every `prompt + response` with the reward model, and takes one gradient step on GRPO's clipped
policy-gradient loss: the advantage of a response is its reward minus the mean of its prompt's group, over the
group's standard deviation, and `beta` weighs the per-token KL estimate exp(r) - r - 1 (r = log pi_ref - log pi)
against the frozen starting policy. The tuned policy is written like `export` does (model/ + model.tar).
"""

import dataclasses
import os

import torch

from .architecture import context_length, count_params
from .config import Device, from_dict, read_jsonl, require
from .devices import resolve_device, setup_threads
from .events import ConfigError, emit, log, stdout_to_stderr
from .model_files import load_pretrained, save_model_dir, unpacked_model, write_model_tar
from .template import as_messages, prompt_text
from .tokenizer import chat_format_of, load_tokenizer
from .trl_common import common_args, quiet_libraries, scratch_dir, step_events


@dataclasses.dataclass
class RLConfig:
    """The `rl` command's config; `run` builds TRL's `GRPOConfig` from it (as `trl.GRPOConfig`)."""

    policy: str  # model directory or model.tar: the starting policy, also the frozen KL reference
    reward_model: str  # directory or model.tar written by `reward` (a sequence classifier with one output)
    prompts: str  # JSONL of {prompt, ...}
    output_dir: str
    steps: int
    batch_size: int  # prompts per step; each is sampled num_generations times
    num_generations: int
    max_new_tokens: int
    learning_rate: float
    beta: float  # weight of the KL penalty to the reference; 0 turns it (and the reference model) off
    seed: int
    temperature: float = 1.0  # sampling temperature of the rollouts
    device: Device = "auto"

    def __post_init__(self):
        need = lambda ok, field, msg: require(ok, "rl", field, msg)  # noqa: E731
        for field in ("policy", "reward_model", "prompts", "output_dir"):
            need(bool(getattr(self, field)), field, "must be a non-empty path")
        need(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        need(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        # GRPO's advantage is a reward relative to the other samples of the same prompt: one sample has none.
        need(self.num_generations >= 2, "num_generations", f"must be at least 2, got {self.num_generations}")
        need(self.max_new_tokens >= 1, "max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        need(0 < self.learning_rate <= 1, "learning_rate", f"must be in (0, 1], got {self.learning_rate}")
        need(self.beta >= 0, "beta", f"must be at least 0, got {self.beta}")
        need(self.temperature > 0, "temperature", f"must be positive, got {self.temperature}")
        need(self.seed >= 0, "seed", f"must be at least 0, got {self.seed}")


def positions_from_attention_mask(model) -> None:
    """Give the backbone position ids that skip left padding when the caller passes none.

    GRPOTrainer left-pads the prompts of a batch. Generation derives positions from the attention mask, but the
    trainer's log-probability forward passes none, so a model with learned absolute positions (GPT-2) would
    score a padded sample at other positions than it was sampled at. Rotary models are unaffected either way.
    """
    def hook(module, args, kwargs):
        mask, ids = kwargs.get("attention_mask"), kwargs.get("input_ids", args[0] if args else None)
        # Only a whole padded sequence without a cache: a decoding step (mask longer than ids) brings its own.
        if kwargs.get("position_ids") is None and mask is not None and ids is not None and mask.dim() == 2 \
                and mask.shape == ids.shape and not bool(mask.all()):
            kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return args, kwargs

    model.base_model.register_forward_pre_hook(hook, with_kwargs=True)


def load_reward_model(path: str):
    """(reward model, its tokenizer) from a directory or tar written by `reward`."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    with unpacked_model(path) as src:
        missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not os.path.isfile(os.path.join(src, f))]
        if missing:
            raise ConfigError(f"rl: reward_model {path} lacks {', '.join(missing)}")
        config = AutoConfig.from_pretrained(src, local_files_only=True)
        # A causal LM would load too, with a random score head, and quietly reward noise: refuse it.
        if not any(a.endswith("ForSequenceClassification") for a in (config.architectures or [])) or config.num_labels != 1:
            raise ConfigError(f"rl config: field 'reward_model' ({path}) is not a reward model (architectures "
                              f"{config.architectures}, num_labels {config.num_labels}); train one with the reward command")
        model = AutoModelForSequenceClassification.from_pretrained(src, local_files_only=True, dtype=torch.float32)
        tokenizer = load_tokenizer(os.path.join(src, "tokenizer.json"))
    model.config.pad_token_id = tokenizer.eos_token_id  # scores sit on the last token that is not padding (eos)
    model.config._name_or_path = "reward_model"  # TRL names its reward metrics after it; a staging path is noise
    return model.eval(), tokenizer


def run(raw: dict) -> None:
    cfg = from_dict(RLConfig, raw, "rl")
    setup_threads()
    device = resolve_device(cfg.device)
    prompts = [r["prompt"] for r in read_jsonl(cfg.prompts, ("prompt",))]

    import datasets
    import trl

    quiet_libraries()
    with scratch_dir(cfg.output_dir) as scratch, unpacked_model(cfg.policy) as src, stdout_to_stderr():
        policy, tokenizer = load_pretrained(src, torch.device("cpu"))
        policy.train()
        fmt = chat_format_of(tokenizer)
        rows = [{"prompt": prompt_text(fmt, as_messages(p))} for p in prompts]
        reward_model, reward_tokenizer = load_reward_model(cfg.reward_model)
        longest = max(len(tokenizer.encode(r["prompt"], add_special_tokens=False)) for r in rows)
        if longest + cfg.max_new_tokens > context_length(policy.config):
            raise ConfigError(f"rl config: field 'max_new_tokens' ({cfg.max_new_tokens}) plus the longest prompt ({longest} tokens) "
                              f"exceeds the policy's context length ({context_length(policy.config)})")
        args = trl.GRPOConfig(
            # One optimizer step per generation round: batch_size prompts x num_generations samples, used once.
            **common_args(device, scratch, cfg.steps, cfg.batch_size * cfg.num_generations, cfg.learning_rate, cfg.seed),
            num_generations=cfg.num_generations,
            max_completion_length=cfg.max_new_tokens,
            temperature=cfg.temperature,
            beta=cfg.beta,
            use_vllm=False,
            disable_dropout=True,  # the KL and the importance ratios compare log-probs of identical forwards
        )
        trainer = trl.GRPOTrainer(model=policy, reward_funcs=reward_model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                                  processing_class=tokenizer, reward_processing_classes=reward_tokenizer)
        positions_from_attention_mask(trainer.model)
        if trainer.ref_model is not None:
            positions_from_attention_mask(trainer.accelerator.unwrap_model(trainer.ref_model))
        steps = step_events(trainer, {"reward": "reward", "reward_std": "reward_std", "kl": "kl"})
        emit("started", command="rl", device=device.type, step=0, total_steps=cfg.steps, params=count_params(policy))
        trainer.train()
        log.info("rl: last step %s", steps.logs[-1] if steps.logs else None)

        tuned = trainer.accelerator.unwrap_model(trainer.model).to("cpu").float().eval()
        model_dir = save_model_dir(tuned, os.path.join(src, "tokenizer.json"), os.path.join(cfg.output_dir, "model"), fmt=fmt)
    model_tar = write_model_tar(model_dir, os.path.join(cfg.output_dir, "model.tar"))
    first, last = (steps.logs[0], steps.logs[-1]) if steps.logs else ({}, {})
    emit("finished", command="rl", step=int(trainer.state.global_step), final_loss=last.get("loss"),
         reward_mean=last.get("reward"), initial_reward_mean=first.get("reward"), kl=last.get("kl"),
         model_dir=model_dir, model_tar=model_tar)
