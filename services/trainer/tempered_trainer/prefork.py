"""A pre-started trainer: import the ML libraries once, then fork one child per job.

Importing torch, transformers, peft and trl costs about 5 CPU-seconds, paid today by every trainer job before it
does anything. A worker instead starts one server per process,

    python -m tempered_trainer.prefork serve SOCKET

that imports them (never touching CUDA, so a child may still pick its GPU), prints one `ready` line on stdout,
and waits on a Unix socket. A job is started with

    python -m tempered_trainer.prefork run SOCKET <command> --config CONFIG.json

a stdlib-only client (a few milliseconds to start) that hands the server its stdin, stdout and stderr (SCM_RIGHTS),
working directory, environment and arguments. The server forks a child that becomes the job: same stdio, cwd and
environment as a plain `python -m tempered_trainer <command>` started by the client, the same events and exit
codes. The child leads its own process group and dies with the server (PR_SET_PDEATHSIG). The client waits for the
child's exit status and exits with it; when the client dies (the activity's cancellation or hang watchdog kills
its process group), the server kills the child's group at once. So to the activity the client *is* the job: it
stays killable, and one job's crash never touches another's.
"""

import json
import os
import selectors
import signal
import socket
import sys
import time

# One request line of JSON (argv, cwd, env) with the three descriptors; the environment bounds its size.
MAX_REQUEST = 1 << 20


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal N: 128+N, as a shell reports it


# ---------------------------------------------------------------------------------------------- the client


def run_client(sock_path: str, argv: list) -> int:
    """Starts one job on the server at `sock_path` and returns its exit code."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(sock_path)
    except OSError as err:
        print(f"prefork: the trainer server at {sock_path} is not reachable ({err})", file=sys.stderr)
        return 1
    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode() + b"\n"
    socket.send_fds(conn, [request], [0, 1, 2])
    replies = conn.makefile("rb")
    started = replies.readline()
    if not started:
        print("prefork: the trainer server closed the connection before starting the job", file=sys.stderr)
        return 1
    pid = json.loads(started)["pid"]

    def forward(signum, _frame):
        # SIGTERM (a clean stop) reaches the job's whole group, as it would a plain trainer's.
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    finished = replies.readline()
    if not finished:
        print("prefork: the trainer server died while the job ran", file=sys.stderr)
        return 1
    return int(json.loads(finished)["exit"])


# ---------------------------------------------------------------------------------------------- the server


def _preload() -> None:
    """Everything a job imports, so a child starts with it all in memory (shared copy-on-write)."""
    import importlib

    from .__main__ import COMMANDS

    for module in sorted(set(COMMANDS.values())):
        importlib.import_module(f".{module}", __package__)
    import torch

    # A forked child cannot use a CUDA context made before the fork; nothing above may have made one.
    if torch.cuda.is_initialized():
        raise RuntimeError("CUDA was initialized while preloading; forked jobs could not use the GPU")


def _set_parent_death_signal() -> None:
    """Linux: the child gets SIGKILL when the server dies, so no job outlives it unsupervised."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _become_job(request: dict, fds: list, server_pid: int, inherited: list) -> None:
    """In the forked child: take the client's stdio, cwd and environment, run the command, never return."""
    code = 1
    try:
        os.setpgid(0, 0)
        _set_parent_death_signal()
        if os.getppid() != server_pid:  # the server died before the line above took effect
            os._exit(1)
        for held in inherited:  # the server's sockets, other jobs' connections and pidfds are not the job's
            held.close() if hasattr(held, "close") else os.close(held)
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["tempered_trainer", *request["argv"]]
        from .__main__ import main

        code = main(request["argv"])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 - the child must end here, whatever happened
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code or 0)


class _Job:
    def __init__(self, pid: int, conn: socket.socket):
        self.pid, self.conn = pid, conn
        self.pidfd = os.pidfd_open(pid)

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _read_request(conn: socket.socket):
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
        more = conn.recv(65536)
        if not more:
            break
        data += more
    if len(fds) != 3 or not data.endswith(b"\n"):
        for fd in fds:
            os.close(fd)
        raise ValueError("a request is one JSON line with stdin, stdout and stderr attached")
    return json.loads(data), fds


def serve(sock_path: str) -> int:
    started = time.monotonic()
    _preload()
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is created mode 600: whoever connects runs code as this user
    try:
        listener.bind(sock_path)
    finally:
        os.umask(old_umask)
    listener.listen(64)
    server_pid = os.getpid()
    jobs = {}  # pidfd -> _Job
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    # stdin is a pipe from the worker: end of file means the worker is gone, and so must we be.
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "parent")

    def stop(*_):
        for job in list(jobs.values()):
            job.kill()
        try:
            os.unlink(sock_path)
        except FileNotFoundError:
            pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"event": "ready", "pid": server_pid, "preload_seconds": round(time.monotonic() - started, 3)}), flush=True)

    while True:
        for key, _mask in selector.select():
            what = key.data
            if what == "accept":
                conn, _ = listener.accept()
                try:
                    request, fds = _read_request(conn)
                except (OSError, ValueError) as err:
                    print(f"prefork: refused a request: {err}", file=sys.stderr, flush=True)
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    _become_job(request, fds, server_pid, [selector, listener, conn, *(j.conn for j in jobs.values()), *jobs])
                try:  # also here, not only in the child: a kill right after the fork must reach the job's group
                    os.setpgid(pid, pid)
                except OSError:
                    pass  # the child did it first (or has already gone)
                for fd in fds:
                    os.close(fd)
                job = _Job(pid, conn)
                jobs[job.pidfd] = job
                selector.register(job.pidfd, selectors.EVENT_READ, ("exited", job))
                selector.register(conn, selectors.EVENT_READ, ("client", job))
                try:
                    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                except OSError:
                    job.kill()  # the client is already gone
            elif what == "parent":
                if not os.read(key.fd, 4096):
                    stop()
            elif what[0] == "client":
                job = what[1]
                if job.conn.fileno() == -1:  # its exit, earlier in this same batch of events, closed it
                    continue
                try:
                    gone = not job.conn.recv(4096)
                except OSError:  # a client killed with unread data resets the connection: as gone, never a crash
                    gone = True
                if gone:  # the client died or was killed: so does its job
                    selector.unregister(job.conn)
                    job.kill()
            elif what[0] == "exited":
                job = what[1]
                _, status = os.waitpid(job.pid, 0)
                selector.unregister(job.pidfd)
                os.close(job.pidfd)
                del jobs[job.pidfd]
                try:
                    job.conn.sendall(json.dumps({"exit": _exit_code(status)}).encode() + b"\n")
                except OSError:
                    pass
                try:
                    selector.unregister(job.conn)
                except (KeyError, ValueError):
                    pass
                job.conn.close()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) >= 2 and argv[0] == "serve":
        return serve(argv[1])
    if len(argv) >= 3 and argv[0] == "run":
        return run_client(argv[1], argv[2:])
    print("usage: python -m tempered_trainer.prefork serve SOCKET | run SOCKET <command> --config CONFIG.json", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
