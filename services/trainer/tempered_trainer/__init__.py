"""tempered_trainer: the Python runtime behind Tempered's training activities.

Every command is `python -m tempered_trainer <command> --config CONFIG.json`; CONTRACT.md (next to this
package) is the binding description of configs, events, checkpoints and the shard format.

Where things are: each command is one module (`sft.py`, `dpo.py`, ...) holding its config dataclass and its
`run`; `config.py` parses any of those configs. The model side is split by concern: `devices.py`,
`tokenizer.py`, `architecture.py`, `lora.py`, `model_files.py` (directories, tars, weights digest),
`checkpoint.py` (what an sft checkpoint holds) and `decoding.py`. `demo_task.py` is the demo task alone.
"""

import os

# Set here, on the first import of any part of the package, because these are read once when transformers and
# huggingface_hub are imported: the trainer must never try the network, and library chatter (progress bars,
# info logs) must stay off a stdout that carries only events. setdefault: a caller's own choice wins.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' own tqdm follows this too
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
