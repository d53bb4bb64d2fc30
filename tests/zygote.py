"""A preloading fork server ("zygote") for the tests' worker processes.

A twin worker started as ``python -m baton worker ROLE`` spends seconds of CPU importing torch,
transformers and baton before it reads its first task; the suite starts hundreds of them on two
cores. The zygote is one process per test session that imports all of that once (and loads the
twin once, so every lazy import of the loading path is done); each ``Workers.spawn`` then asks it
to fork a fresh process that runs ``baton worker ROLE ...`` with the test's arguments, environment,
working directory and log file. Every worker is still a separate process, started the way the
``baton`` command runs (``baton.agents.cli.main``), with its own Redis connections and model.

The worker is forked twice (zygote, then a short-lived middle process that exits at once), so it
is re-parented to the test process, which marks itself a child subreaper (``prctl``): the test
holds a real ``subprocess.Popen`` for it (``poll``, ``wait``, ``kill``, ``send_signal`` and
``returncode`` as for any child).

What a forked worker cannot change is what its parent imported with its own environment: a spawn
whose environment differs from the zygote's in a variable read at import time (``PYTHON*``,
``HF_*``, ``TORCH*``, ``OMP_*``, ...) is started with ``subprocess.Popen`` as before.
``BATON_TEST_ZYGOTE=0`` turns the zygote off (every worker then starts with ``Popen``).

Run as ``python -m tests.zygote SOCKET [TWIN_DIR]``: prints ``ready`` once listening.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["AdoptedProcess", "Zygote", "enabled", "import_sensitive", "session_zygote", "stop_session_zygote"]

_IMPORT_TIME_PREFIXES = (
    "PYTHON", "HF_", "HUGGINGFACE", "TRANSFORMERS", "TORCH", "PYTORCH", "OMP_", "MKL_", "KMP_", "OPENBLAS",
    "CUDA", "LD_", "PROMETHEUS", "OTEL_PYTHON", "MALLOC",
)
"""Environment variables a library may read when it is imported (the zygote imported it already).
``TOKENIZERS_PARALLELISM`` is read when the tokenizer runs (an in-process backend sets it in the
test process's environment, which later workers' environments copy)."""

_WRITE_ONLY = ("PYTHONUNBUFFERED",)
"""Read at start-up, but only make output appear sooner: a forked worker's output is unbuffered."""

_PR_SET_CHILD_SUBREAPER = 36


def enabled() -> bool:
    """The zygote is on unless ``BATON_TEST_ZYGOTE=0``."""
    return os.environ.get("BATON_TEST_ZYGOTE", "1") != "0"


def import_sensitive(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` that imported libraries may have read already."""
    return {k: v for k, v in env.items() if k.startswith(_IMPORT_TIME_PREFIXES) and k not in _WRITE_ONLY}


class AdoptedProcess(subprocess.Popen[bytes]):
    """A ``Popen`` for a process this process did not fork but is the parent of (re-parented to it
    as a child subreaper): ``poll``/``wait`` reap it with ``waitpid`` as for any child."""

    def __init__(self, pid: int, args: Sequence[str]) -> None:  # no super().__init__: nothing to start
        self.args = list(args)
        self.pid = pid
        self.returncode: Any = None
        self.stdin = self.stdout = self.stderr = None
        self.encoding = self.errors = None
        self.text_mode = False
        self.pipesize = -1
        self._waitpid_lock = threading.Lock()
        self._input = None
        self._communication_started = False
        self._sigint_wait_secs = 0.25
        self._closed_child_pipe_fds = True
        self._child_created = True


class Zygote:
    """The client side: starts the zygote process and asks it for workers."""

    def __init__(self, run_dir: Path, env: Mapping[str, str], twin: str | None = None) -> None:
        self.socket_path = str(run_dir / "zygote.sock")
        self.env = dict(env)
        self.log = run_dir / "zygote.log"
        self._lock = threading.Lock()
        self.twins = {twin} if twin else set()
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
        root = Path(__file__).resolve().parent.parent
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.zygote", self.socket_path, *([twin] if twin else [])],
                env=self.env, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 300)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"the test zygote did not start: {self.log.read_text()[-3000:]}")

    def preload(self, twin: str) -> None:
        """Have the zygote load ``twin`` for the workers it forks from now on."""
        with self._lock, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(120)
            conn.connect(self.socket_path)
            conn.sendall(json.dumps({"preload": twin}).encode() + b"\n")
            reply = json.loads(conn.makefile("rb").readline() or b"{}")
        if "error" in reply:
            raise RuntimeError(f"the test zygote could not load {twin}: {reply['error']}")
        self.twins.add(twin)

    def accepts(self, env: Mapping[str, str]) -> bool:
        """True if a worker with ``env`` can be forked from this zygote."""
        return self.proc.poll() is None and import_sensitive(env) == import_sensitive(self.env)

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path | None = None,
              fds: Sequence[int] = ()) -> AdoptedProcess:
        """Fork ``baton ARGV...`` with ``env`` in ``cwd``: its output appended to ``log``, or with
        ``fds`` (three open descriptors) as its stdin, stdout and stderr."""
        request = json.dumps({"argv": list(argv), "env": dict(env), "cwd": str(cwd),
                              "log": None if log is None else str(log)}).encode() + b"\n"
        with self._lock, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(60)
            conn.connect(self.socket_path)
            sent = socket.send_fds(conn, [request], list(fds)) if fds else 0
            conn.sendall(request[sent:])
            reply = json.loads(conn.makefile("rb").readline() or b"{}")
        if "pid" not in reply:
            raise RuntimeError(f"the test zygote could not fork a worker: {reply.get('error', 'no reply')}")
        return AdoptedProcess(int(reply["pid"]), [sys.executable, "-m", "baton", *argv])

    def run(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path,
            timeout: float | None) -> subprocess.CompletedProcess[str]:
        """``subprocess.run([python, -m, baton, *argv], capture_output=True, text=True)`` by a fork."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            proc = self.spawn(argv, env, cwd, fds=(null, out_w, err_w))
        finally:
            for fd in (null, out_w, err_w):
                os.close(fd)
        chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
        with proc:
            try:
                _drain(chunks, timeout)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
            finally:
                for fd in chunks:
                    os.close(fd)
        out, err = (b"".join(chunks[fd]).decode(errors="replace") for fd in (out_r, err_r))
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _drain(chunks: dict[int, list[bytes]], timeout: float | None) -> None:
    """Read the pipes in ``chunks`` until each is closed (``TimeoutExpired`` after ``timeout`` s)."""
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    open_fds = set(chunks)
    while open_fds:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise subprocess.TimeoutExpired("baton", timeout or 0)
        ready, _, _ = select.select(list(open_fds), [], [], left)
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                chunks[fd].append(data)
            else:
                open_fds.discard(fd)


_session: Zygote | None = None
_session_dir: str | None = None
_session_lock = threading.Lock()


def session_zygote(twin: str | None) -> Zygote | None:
    """This test process's zygote, started on first use (``None`` when turned off). Its environment
    is the one ``worker_env`` starts from: this process's, without ``BATON_*``, offline, unbuffered."""
    global _session, _session_dir
    if not enabled():
        return None
    with _session_lock:
        if _session is None:
            import tempfile

            _session_dir = tempfile.mkdtemp(prefix="baton-zygote-")  # short: a socket path has <108 bytes
            env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
            env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "XDG_CACHE_HOME": f"{_session_dir}/cache",
                        "XDG_STATE_HOME": f"{_session_dir}/state"})
            atexit.register(stop_session_zygote)  # also removes the directory if the start fails
            _session = Zygote(Path(_session_dir), env, twin)
        elif twin is not None and twin not in _session.twins:
            _session.preload(twin)
        return _session


def stop_session_zygote() -> None:
    """Stop this process's zygote, if it was started (its workers are the tests' to stop)."""
    global _session, _session_dir
    with _session_lock:
        if _session is not None:
            _session.stop()
            _session = None
        if _session_dir is not None:
            import shutil

            shutil.rmtree(_session_dir, ignore_errors=True)
            _session_dir = None


# --- the zygote process -------------------------------------------------------------------------


def _preload(twin: str | None) -> None:
    """Import what a worker imports and load the twin once (``baton.agents.backends.hf.preload``)."""
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    import baton.agents.backends.hf  # noqa: F401
    import baton.agents.cli  # noqa: F401
    import baton.agents.runtime.multirole  # noqa: F401
    import baton.agents.runtime.worker  # noqa: F401

    if twin:
        from baton.agents.backends.hf import preload

        preload(twin)  # the first twin backend of each forked worker takes its copy
    import gc

    gc.collect()
    gc.freeze()  # the children do not copy the preloaded objects when they collect


_ENTRY = "baton"
"""``sys.argv[0]`` of ``python -m baton``: the path of ``baton/__main__.py`` (found by ``serve``)."""


def _child(request: dict[str, Any], listener: socket.socket, conn: socket.socket) -> None:
    """In the forked worker: become ``python -m baton ARGV...`` and exit with its code."""
    code = 1
    try:
        listener.close()
        conn.close()
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        fds = request.get("fds") or []
        if fds:
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for fd in fds:
                if fd > 2:
                    os.close(fd)
        else:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.path[0] = request["cwd"]
        sys.argv = [_ENTRY, *request["argv"]]
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        os._exit(1)
    atexit._clear()  # the zygote's own exit hooks are not the worker's
    try:
        from baton.agents.cli import main

        code = main(request["argv"])
    except SystemExit as exc:  # as the interpreter exits on it: an int code, else 0 or the message and 1
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _fork(request: dict[str, Any], listener: socket.socket, conn: socket.socket) -> int:
    """Fork the worker through a middle process that exits at once (the worker is re-parented to
    the test process, the subreaper); returns the worker's pid once the middle one is reaped."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(read_end)
        pid = os.fork()
        if pid == 0:
            os.close(write_end)
            _child(request, listener, conn)
        os.write(write_end, str(pid).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        raw = pipe.read()
    os.waitpid(middle, 0)
    if not raw:
        raise RuntimeError("the middle process reported no pid")
    return int(raw)


def _preload_twin(twin: str) -> dict[str, Any]:
    from baton.agents.backends.hf import preload

    preload(twin)
    import gc

    gc.collect()
    gc.freeze()
    return {"ok": True}


def _receive(conn: socket.socket, fds: list[int]) -> dict[str, Any]:
    """One request (a JSON line), and the descriptors sent with it (appended to ``fds``)."""
    data, received, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    fds.extend(received)
    while not data.endswith(b"\n"):
        more = conn.recv(1 << 16)
        if not more:
            raise ConnectionError("request cut short")
        data += more
    request: dict[str, Any] = json.loads(data)
    request["fds"] = list(fds)
    return request


def serve(socket_path: str, twin: str | None) -> None:
    """Preload, listen, and fork one worker per request until the test process goes away."""
    global _ENTRY
    _preload(twin)
    import importlib.util

    spec = importlib.util.find_spec("baton.__main__")
    _ENTRY = str(spec.origin) if spec is not None and spec.origin else _ENTRY
    parent = os.getppid()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(socket_path)
        listener.listen(64)
        listener.settimeout(1.0)
        print("ready", flush=True)
        while os.getppid() == parent:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(30)
                fds: list[int] = []
                try:
                    request = _receive(conn, fds)
                    reply: dict[str, Any] = (_preload_twin(request["preload"]) if "preload" in request
                                             else {"pid": _fork(request, listener, conn)})
                except Exception as exc:  # noqa: BLE001  (reported to the test, the zygote lives on)
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
                finally:
                    for fd in fds:
                        os.close(fd)
                conn.sendall(json.dumps(reply).encode() + b"\n")


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
