"""`dpo`: direct preference optimisation of an exported model with TRL's DPOTrainer.

The Trainer is used only as an optimisation loop: it saves nothing, reports nowhere, and its logs become
`step` events through a callback. The tuned model is written like `export` does (model/ + model.tar), and
`reward_accuracy` is the share of preference pairs whose implicit reward (beta * log-ratio against the
frozen starting model) ranks `chosen` above `rejected` after training.
"""

import os

import torch

from .config import from_dict, read_jsonl
from .dpo_config import DPOConfig
from .events import emit, log, stdout_to_stderr
from .model import context_length, count_params, load_pretrained, resolve_device, save_model_dir, setup_threads, unpacked_model, write_model_tar
from .template import EOS, format_prompt
from .trl_common import common_args, quiet_libraries, scratch_dir, step_events


def read_preferences(path: str) -> list:
    """{prompt, chosen, rejected} rows with the tokenize template applied; chosen/rejected end with eos so the
    model learns (and is judged on) where to stop."""
    return [{"prompt": format_prompt(r["prompt"]), "chosen": r["chosen"] + EOS, "rejected": r["rejected"] + EOS}
            for r in read_jsonl(path, ("prompt", "chosen", "rejected"))]


def run(raw: dict) -> None:
    cfg = from_dict(DPOConfig, raw, "dpo")
    setup_threads()
    device = resolve_device(cfg.device)
    rows = read_preferences(cfg.preferences)

    import datasets
    import trl

    quiet_libraries()
    with scratch_dir(cfg.output_dir) as scratch:
        with unpacked_model(cfg.model) as src, stdout_to_stderr():
            model, tokenizer = load_pretrained(src, torch.device("cpu"))
            model.train()
            dataset = datasets.Dataset.from_list(rows)
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
            model_dir = save_model_dir(tuned, os.path.join(src, "tokenizer.json"), os.path.join(cfg.output_dir, "model"))
        model_tar = write_model_tar(model_dir, os.path.join(cfg.output_dir, "model.tar"))
    emit("finished", command="dpo", step=int(trainer.state.global_step), final_loss=steps.logs[-1]["loss"] if steps.logs else None,
         reward_accuracy=reward_accuracy, model_dir=model_dir, model_tar=model_tar)
