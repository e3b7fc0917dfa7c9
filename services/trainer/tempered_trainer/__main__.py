"""Command line: `python -m tempered_trainer <command> --config CONFIG.json` (a thin shell over the commands)."""

import argparse
import importlib
import signal
import sys
import warnings

from .config import load_json
from .events import fail, run_guarded, setup_logging

# command -> module with its config dataclass and a `run(config_dict)` that parses into it; imported lazily so
# `tokenize` never pays for torch. The offline environment is set by the package's __init__, before any of them.
COMMANDS = {
    "tokenize": "tokenize",
    "sft": "sft",
    "eval": "eval",
    "export": "export",
    "dpo": "dpo",
    "reward": "reward",
    "rl": "rl",
    "compare": "compare",
    "judge": "judge",
    "interval": "interval",
    "sample": "sample",
    "serve": "serve",
    "convert": "convert",
    "classifier": "classifier",
    "gguf": "gguf",
}


def _terminate(signum, frame):
    # The activity stops us with SIGTERM on cancel or timeout; turn it into a retryable `error` event.
    raise KeyboardInterrupt("SIGTERM")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # Even a bad command line ends with an `error` event, so the activity always has a reason to show.
        self.print_usage(sys.stderr)
        sys.exit(fail(f"bad command line: {message}", retryable=False))


def main(argv=None) -> int:
    parser = _Parser(prog="python -m tempered_trainer", description="Tempered's trainer (see CONTRACT.md)")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--config", required=True, help="JSON config file for the command")
    args = parser.parse_args(argv)

    setup_logging()
    # Library warnings are noise for the activity; they go to stderr at most, never stdout.
    warnings.filterwarnings("ignore")
    if args.command != "serve":  # serve installs its own clean-shutdown handler
        signal.signal(signal.SIGTERM, _terminate)

    def command():
        raw = load_json(args.config)
        module = importlib.import_module(f".{COMMANDS[args.command]}", __package__)
        module.run(raw)

    return run_guarded(command)


if __name__ == "__main__":
    sys.exit(main())
