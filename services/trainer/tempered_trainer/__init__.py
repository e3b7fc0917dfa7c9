"""tempered_trainer: the Python runtime behind Tempered's training activities.

Every command is `python -m tempered_trainer <command> --config CONFIG.json`; CONTRACT.md (next to this
package) is the binding description of configs, events, checkpoints and the shard format.
"""

__version__ = "0.1.0"
