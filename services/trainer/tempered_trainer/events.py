"""JSON-lines events on stdout, human logs on stderr, and the error/exit-code convention.

The TypeScript activity parses stdout line by line, so events are the *only* thing ever written there; every
library chatter goes to stderr. A failed run ends with one `error` event: exit code 2 when retrying cannot help
(bad config or bad input), 1 when it might (anything else: out of memory, a lost device, a bug).
"""

import contextlib
import json
import logging
import math
import signal
import sys
import time

log = logging.getLogger("tempered_trainer")


# Where events go; None means the current sys.stdout. Set while `stdout_to_stderr` is active.
_stream = None


class ConfigError(Exception):
    """Bad config or bad input data: the same call would fail again, so it is not retryable."""


class RetryableError(Exception):
    """A failure that another attempt (or another worker) may not hit, e.g. a device lost mid-run."""


def json_safe(value):
    # JSON has no NaN/Infinity; a diverged loss must still produce a parseable line.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def emit(event: str, **fields) -> None:
    """Write one event line to stdout and flush, so the activity sees it at once."""
    record = {"event": event, "time": time.time(), **fields}
    out = _stream or sys.stdout
    out.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
    out.flush()


class Progress:
    """`progress` events of a long computation without steps (scoring, generation): at most one every `every`
    seconds, so that the activity's heartbeat and hang watchdog see a working trainer, not a silent one."""

    def __init__(self, what: str, total: int, every: float = 10.0):
        self.what, self.total, self.every = what, total, every
        self.done, self.last = 0, time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            emit("progress", what=self.what, done=self.done, total=self.total)


def events_to_stderr() -> None:
    """For the ranks other than 0 of a distributed job: their events (the same numbers as rank 0's) go to the
    log, so stdout carries one stream of events, rank 0's."""
    global _stream
    _stream = sys.stderr


@contextlib.contextmanager
def stdout_to_stderr():
    """Send stray print()s of libraries (e.g. transformers' Trainer) to stderr while events keep stdout."""
    global _stream
    saved, _stream = _stream, sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _stream = saved


def setup_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def fail(reason: str, retryable: bool) -> int:
    """Emit the final `error` event and return the exit code the process should end with."""
    emit("error", reason=reason, retryable=retryable)
    return 1 if retryable else 2


def run_guarded(fn, *args) -> int:
    """Run a command, turning every exception into an `error` event plus the contract's exit code."""
    try:
        fn(*args)
        return 0
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - the contract wants every failure reported as an event
        # From here the process only reports and exits. A SIGTERM now (torchrun stops every rank once one has
        # failed) would raise KeyboardInterrupt inside this handler and end the process without its event.
        with contextlib.suppress(ValueError):  # ValueError: not the main thread, where no handler was set either
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return _report(e)


def _report(e: BaseException) -> int:
    if isinstance(e, ConfigError):
        return fail(str(e), retryable=False)
    if isinstance(e, FileNotFoundError):
        # Inputs are staged before the call; a missing file is a bad input, not a transient fault.
        return fail(f"file not found: {e.filename or e}", retryable=False)
    if isinstance(e, RetryableError):
        return fail(str(e), retryable=True)
    if isinstance(e, KeyboardInterrupt):
        return fail(f"interrupted by {e}" if str(e) else "interrupted", retryable=True)
    log.exception("command failed", exc_info=e)
    return fail(f"{type(e).__name__}: {e}", retryable=True)
