"""What the commands built on a TRL trainer (dpo, reward, rl) share: the Trainer is used only as an
optimisation loop, so it saves nothing, reports nowhere, prints nothing on stdout, and its logs become `step`
events through a callback.
"""

import contextlib
import os
import shutil
import tempfile
import time

from .events import emit


def quiet_libraries() -> None:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def common_args(device, scratch: str, steps: int, batch_size: int, learning_rate: float, seed: int) -> dict:
    """TrainingArguments every command sets the same way."""
    return dict(
        output_dir=scratch,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0,
        seed=seed,
        data_seed=seed,
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


@contextlib.contextmanager
def scratch_dir(output_dir: str):
    """A directory for the Trainer's own output_dir inside ours; nothing in it is kept."""
    os.makedirs(output_dir, exist_ok=True)
    path = tempfile.mkdtemp(prefix=".trainer-", dir=output_dir)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def step_events(trainer, fields: dict):
    """Attach a callback that turns each training log into a `step` event; returns it (its `logs` is the list of
    logged dicts). `fields` maps extra event fields to the Trainer's log keys, e.g. {"kl": "kl"}."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class StepEvents(TrainerCallback):
        def __init__(self):
            self.last_time, self.last_tokens, self.logs = time.perf_counter(), 0.0, []

        def on_train_begin(self, args, state, control, **kwargs):
            self.last_time = time.perf_counter()  # so the first rate does not include model loading

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:  # eval and end-of-training summaries are not steps
                return
            now, tokens = time.perf_counter(), float(logs.get("num_tokens", 0.0))
            rate = (tokens - self.last_tokens) / max(now - self.last_time, 1e-9)
            self.last_time, self.last_tokens = now, tokens
            self.logs.append(dict(logs))
            emit("step", step=state.global_step, loss=float(logs["loss"]), lr=float(logs.get("learning_rate", 0.0)),
                 tokens_per_sec=rate, **{name: logs.get(key) for name, key in fields.items()})

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    callback = StepEvents()
    trainer.add_callback(callback)
    return callback
