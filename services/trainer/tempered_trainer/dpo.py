"""`dpo`: direct preference optimisation of an exported model with TRL's DPOTrainer.

The Trainer is used only as an optimisation loop: it saves nothing, reports nowhere, and its logs become
`step` events through a callback. The tuned model is written like `export` does (model/ + model.tar), and
`reward_accuracy` is the share of preference pairs whose implicit reward (beta * log-ratio against the
frozen starting model) ranks `chosen` above `rejected` after training.
"""

import dataclasses
import os

import torch

from .architecture import context_length, count_params
from .config import Device, from_dict, read_jsonl, require
from .devices import resolve_device, setup_threads
from .events import emit, log, stdout_to_stderr
from .model_files import load_pretrained, save_model_dir, unpacked_model, write_model_tar
from .template import as_messages, prompt_text
from .tokenizer import chat_format_of
from .trl_common import common_args, quiet_libraries, scratch_dir, step_events


@dataclasses.dataclass
class DPOConfig:
    """The `dpo` command's config. Named like TRL's own `DPOConfig`, which `run` builds from it (as `trl.DPOConfig`)."""

    model: str  # model directory or model.tar
    preferences: str  # JSONL of {prompt, chosen, rejected}
    output_dir: str
    steps: int
    batch_size: int
    learning_rate: float
    beta: float
    seed: int
    device: Device = "auto"

    def __post_init__(self):
        need = lambda ok, field, msg: require(ok, "dpo", field, msg)  # noqa: E731
        for field in ("model", "preferences", "output_dir"):
            need(bool(getattr(self, field)), field, "must be a non-empty path")
        need(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        need(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        need(0 < self.learning_rate <= 1, "learning_rate", f"must be in (0, 1], got {self.learning_rate}")
        need(self.beta > 0, "beta", f"must be positive, got {self.beta}")
        need(self.seed >= 0, "seed", f"must be at least 0, got {self.seed}")


def read_preferences(path: str, fmt) -> list:
    """{prompt, chosen, rejected} rows rendered by the model's chat format (the prompt as one user turn, with the
    generation prompt); chosen/rejected end with the end-of-turn token so the model learns (and is judged on)
    where to stop."""
    return [{"prompt": prompt_text(fmt, as_messages(r["prompt"])), "chosen": r["chosen"] + fmt.end, "rejected": r["rejected"] + fmt.end}
            for r in read_jsonl(path, ("prompt", "chosen", "rejected"))]


def run(raw: dict) -> None:
    cfg = from_dict(DPOConfig, raw, "dpo")
    setup_threads()
    device = resolve_device(cfg.device)
    read_jsonl(cfg.preferences, ("prompt", "chosen", "rejected"))  # a bad file fails before the model loads

    import datasets
    import trl

    quiet_libraries()
    with scratch_dir(cfg.output_dir) as scratch:
        with unpacked_model(cfg.model) as src, stdout_to_stderr():
            model, tokenizer = load_pretrained(src, torch.device("cpu"))
            model.train()
            fmt = chat_format_of(tokenizer)
            dataset = datasets.Dataset.from_list(read_preferences(cfg.preferences, fmt))
            args = trl.DPOConfig(
                **common_args(device, scratch, cfg.steps, cfg.batch_size, cfg.learning_rate, cfg.seed),
                per_device_eval_batch_size=max(cfg.batch_size, 32),
                beta=cfg.beta,
                max_length=context_length(model.config),
            )
            trainer = trl.DPOTrainer(model=model, args=args, train_dataset=dataset, eval_dataset=dataset, processing_class=tokenizer)
            steps = step_events(trainer, {"reward_accuracy": "rewards/accuracies", "reward_margin": "rewards/margins"})
            emit("started", command="dpo", device=device.type, step=0, total_steps=cfg.steps, params=count_params(model))
            trainer.train()
            metrics = trainer.evaluate()
            reward_accuracy = float(metrics.get("eval_rewards/accuracies", float("nan")))
            log.info("dpo eval on the preference pairs: %s", metrics)

            tuned = trainer.accelerator.unwrap_model(trainer.model).to("cpu").float()
            model_dir = save_model_dir(tuned, os.path.join(src, "tokenizer.json"), os.path.join(cfg.output_dir, "model"), fmt=fmt)
        model_tar = write_model_tar(model_dir, os.path.join(cfg.output_dir, "model.tar"))
    emit("finished", command="dpo", step=int(trainer.state.global_step), final_loss=steps.logs[-1]["loss"] if steps.logs else None,
         reward_accuracy=reward_accuracy, model_dir=model_dir, model_tar=model_tar)
