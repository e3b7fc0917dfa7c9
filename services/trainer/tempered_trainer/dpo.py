"""`dpo`: direct preference optimisation of an exported model with TRL's DPOTrainer.

The Trainer is used only as an optimisation loop: it saves nothing, reports nowhere, and its logs become
`step` events through a callback. The tuned model is written like `export` does (model/ + model.tar), and
`reward_accuracy` is the share of preference pairs whose implicit reward (beta * log-ratio against the
frozen starting model) ranks `chosen` above `rejected` after training.
"""

import json
import os
import shutil
import tempfile
import time

import torch

from .config import from_dict
from .dpo_config import DPOConfig
from .events import ConfigError, emit, log, stdout_to_stderr
from .model import count_params, load_pretrained, resolve_device, save_model_dir, setup_threads, unpacked_model, write_model_tar
from .template import EOS, format_prompt


def read_preferences(path: str) -> list:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path} line {n}: not JSON ({e})") from e
            for field in ("prompt", "chosen", "rejected"):
                if not isinstance(r, dict) or not isinstance(r.get(field), str):
                    raise ConfigError(f"{path} line {n}: field '{field}' must be a string")
            # Same template as tokenize/sft; responses end with eos so the model learns where to stop.
            rows.append({"prompt": format_prompt(r["prompt"]), "chosen": r["chosen"] + EOS, "rejected": r["rejected"] + EOS})
    if not rows:
        raise ConfigError(f"{path} has no preference pairs")
    return rows


def _step_callback():
    from transformers import TrainerCallback

    class StepEvents(TrainerCallback):
        """Turns each training log of the Trainer into a `step` event."""

        def __init__(self):
            self.last_time, self.last_tokens, self.losses = time.perf_counter(), 0.0, []

        def on_train_begin(self, args, state, control, **kwargs):
            self.last_time = time.perf_counter()  # so the first rate does not include model loading

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:  # eval and end-of-training summaries are not steps
                return
            now, tokens = time.perf_counter(), float(logs.get("num_tokens", 0.0))
            rate = (tokens - self.last_tokens) / max(now - self.last_time, 1e-9)
            self.last_time, self.last_tokens = now, tokens
            self.losses.append(float(logs["loss"]))
            emit("step", step=state.global_step, loss=float(logs["loss"]), lr=float(logs.get("learning_rate", 0.0)),
                 tokens_per_sec=rate, reward_accuracy=logs.get("rewards/accuracies"), reward_margin=logs.get("rewards/margins"))

    return StepEvents()


def run(raw: dict) -> None:
    cfg = from_dict(DPOConfig, raw, "dpo")
    setup_threads()
    device = resolve_device(cfg.device)
    rows = read_preferences(cfg.preferences)

    import datasets
    import trl
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    os.makedirs(cfg.output_dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".trainer-", dir=cfg.output_dir)  # the Trainer wants an output_dir; nothing is kept
    try:
        with unpacked_model(cfg.model) as src, stdout_to_stderr():
            model, tokenizer = load_pretrained(src, torch.device("cpu"))
            model.train()
            dataset = datasets.Dataset.from_list(rows)
            args = trl.DPOConfig(
                output_dir=scratch,
                max_steps=cfg.steps,
                per_device_train_batch_size=cfg.batch_size,
                per_device_eval_batch_size=max(cfg.batch_size, 32),
                learning_rate=cfg.learning_rate,
                lr_scheduler_type="linear",
                warmup_steps=0,
                beta=cfg.beta,
                seed=cfg.seed,
                data_seed=cfg.seed,
                max_length=model.config.n_positions,
                # CPU: plain fp32 (TRL defaults bf16=True). CUDA: bf16 autocast, as the contract says.
                use_cpu=device.type == "cpu",
                bf16=device.type == "cuda",
                # TRL turns gradient checkpointing on by default; for tiny models it only costs time.
                gradient_checkpointing=False,
                logging_steps=1,
                save_strategy="no",
                eval_strategy="no",
                report_to="none",
                disable_tqdm=True,
                log_level="error",
                dataloader_num_workers=0,
            )
            trainer = trl.DPOTrainer(model=model, args=args, train_dataset=dataset, eval_dataset=dataset, processing_class=tokenizer)
            for cb in (PrinterCallback, ProgressCallback):
                trainer.remove_callback(cb)
            steps = _step_callback()
            trainer.add_callback(steps)
            emit("started", command="dpo", device=device.type, step=0, total_steps=cfg.steps, params=count_params(model))
            trainer.train()
            metrics = trainer.evaluate()
            reward_accuracy = float(metrics.get("eval_rewards/accuracies", float("nan")))
            log.info("dpo eval on the preference pairs: %s", metrics)

            tuned = trainer.accelerator.unwrap_model(trainer.model).to("cpu").float()
            model_dir = save_model_dir(tuned, os.path.join(src, "tokenizer.json"), os.path.join(cfg.output_dir, "model"))
        model_tar = write_model_tar(model_dir, os.path.join(cfg.output_dir, "model.tar"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    emit("finished", command="dpo", step=int(trainer.state.global_step), final_loss=steps.losses[-1] if steps.losses else None,
         reward_accuracy=reward_accuracy, model_dir=model_dir, model_tar=model_tar)
