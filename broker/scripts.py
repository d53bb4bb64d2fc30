"""The one registry of baton's Lua: a Redis Functions library, loaded once per primary by an admin.

Every atomic step (``broker/lua/<step>.lua``: commit, park, decide, join, budget, ratelimit, started, submit, wait,
thread_submit, thread_end, tenant_admit, tenant_end) is a function of one library, rendered from
``lua/library.lua``: the shared vocabulary goes in as the Lua table ``C`` (``library_constants``: terminal run
states, review decisions...),
the shared checks (``claim``, ``is_terminal``) are written once there, and each step's body follows as a local
function of ``(KEYS, ARGV)``. The library's name carries a hash of its source
(``baton_<12 hex>``), so two versions of baton can share a server during a rolling upgrade.

Who loads it: ``baton setup`` (compose's ``setup`` job) with an admin connection, on every
primary (``FUNCTION LOAD``; replicas and AOF/RDB carry it on). Role users get ``FCALL`` and nothing
that loads code (``broker/acl.py``). A client whose server lacks the library loads it itself when
its user may (the default user of a development server) and otherwise stops with
``LibraryMissing`` ("run `baton setup`").

Servers without Functions (Redis 6.2): the same rendered functions run as scripts through
``EVALSHA`` (``SCRIPT LOAD`` on first use). That path is chosen per server, once, when
``FCALL`` is an unknown command; there a role user needs ``evalsha`` and ``script|load``
(``baton acl --scripts``), which let it run any Lua: Redis 7 is the supported server for role ACLs.

Round trips: a client checks the library once (one ``FCALL <lib>_version``) and then calls each
step with one ``FCALL``, exactly as many round trips as ``EVALSHA`` took.
"""

from __future__ import annotations

import enum
import hashlib
import weakref
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoPermissionError, NoScriptError, ResponseError

from .cache import PerClient
from .cluster import is_cluster
from .drive import Call, Op, arun, is_async, run
from .errors import BrokerError

__all__ = ["STEPS", "Library", "LibraryMissing", "LuaScript", "Mode", "check_library", "is_missing", "library",
           "library_constants", "render_library", "setup_library"]

STEPS = ("commit", "park", "decide", "join", "budget", "ratelimit", "started", "submit", "wait", "thread_submit",
         "thread_end", "tenant_admit", "tenant_end")
"""The steps of the library, one ``lua/<step>.lua`` body each."""

Arg = str | bytes | float | int
LuaValue = str | int | float | bool | Sequence[Any] | frozenset[str] | set[str] | Mapping[str, Any]


class LibraryMissing(BrokerError):
    """The server has no baton Functions library of this version and this user may not load it."""


class Mode(enum.Enum):
    """How one server runs the steps."""

    FUNCTIONS = "functions"
    SCRIPTS = "scripts"  # Redis < 7: no FUNCTION/FCALL


def library_constants() -> dict[str, LuaValue]:
    """The shared vocabulary rendered into the library as ``C`` (the seam for more of it).

    ``TERMINAL_STATUSES`` is a set (``C.TERMINAL_STATUSES[s] == true``), ``DECISIONS`` a list, ``STATUS``
    the run statuses by name (``C.STATUS.WAITING``).
    """
    from ..protocol import DECISIONS, TERMINAL_STATUSES, RunStatus

    return {"TERMINAL_STATUSES": frozenset(s.value for s in TERMINAL_STATUSES), "DECISIONS": list(DECISIONS),
            "STATUS": {s.name: s.value for s in RunStatus}}


def _lua(value: LuaValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"
    if isinstance(value, frozenset | set):
        return "{" + ", ".join(f"[{_lua(v)}] = true" for v in sorted(value)) + "}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in sorted(value.items())) + "}"
    return "{" + ", ".join(_lua(v) for v in value) + "}"


def _read(name: str) -> str:
    return resources.files("baton.broker").joinpath(f"lua/{name}").read_text()


def render_library(constants: Mapping[str, LuaValue] | None = None, *, name: str | None = None) -> str:
    """The library's source: the template with ``constants`` (default ``library_constants()``) and
    every step. ``name`` defaults to ``baton_<hash of the source rendered without a name>``."""
    consts = library_constants() if constants is None else constants
    table = "{\n" + "".join(f"  {k} = {_lua(v)},\n" for k, v in sorted(consts.items())) + "}"
    steps = "".join(f"\nlocal function step_{s}(KEYS, ARGV)\n{_read(f'{s}.lua')}end\n" for s in STEPS)
    source = _read("library.lua").replace("{{constants}}", table) + steps
    lib = name or f"baton_{hashlib.sha1(source.encode()).hexdigest()[:12]}"
    registry = "".join(f"redis.register_function('{lib}_{s}', step_{s})\n" for s in STEPS)
    registry += f"redis.register_function('{lib}_version', function() return '{lib}' end)\n"
    return source.replace("{{library}}", lib) + "\n" + registry


class Library:
    """One rendered library and how each server runs it (functions, or scripts on Redis < 7)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.name = source.split("\n", 1)[0].removeprefix("#!lua name=").strip()
        self._modes: PerClient[str, Mode] = PerClient(maxsize=1)
        self._last: tuple[weakref.ref[redis.Redis], Mode] | None = None
        self._scripts = {s: self._script(s) for s in STEPS}

    def _script(self, step: str) -> tuple[str, str]:
        """``(sha, source)`` of ``step`` as a plain script (Redis < 7): the library without its
        registrations, then a call of the step."""
        body = self.source.split("\n", 1)[1].split("\nredis.register_function(", 1)[0]
        src = f"{body}\nreturn step_{step}(KEYS, ARGV)\n"
        return hashlib.sha1(src.encode()).hexdigest(), src

    def function(self, step: str) -> str:
        """The function name of ``step`` in this library."""
        return f"{self.name}_{step}"

    # --- loading -------------------------------------------------------------------------------

    def load(self, client: redis.Redis, *, replace: bool = True) -> int:
        """``FUNCTION LOAD`` the library on the server, on every primary of a cluster; return how
        many servers got it (an admin step: ``baton setup``)."""
        args = ["FUNCTION", "LOAD", *(["REPLACE"] if replace else []), self.source]
        if is_cluster(client):
            primaries = client.get_primaries()  # type: ignore[attr-defined]
            for node in primaries:
                self._load_one(node.redis_connection, args)
            count = len(primaries)
        else:
            self._load_one(client, args)
            count = 1
        self._last = None
        self._modes.forget(client, self.name)
        return count

    @staticmethod
    def _load_one(client: redis.Redis, args: list[str]) -> None:
        try:
            client.execute_command(*args)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            if "already exists" not in str(exc):
                raise

    def mode(self, client: redis.Redis) -> Mode:
        """How ``client``'s server runs the steps, checked once per client (one round trip). The
        last client's answer is kept at hand (a hop asks several times)."""
        last = self._last
        if last is not None and last[0]() is client:
            return last[1]
        mode = self._modes.get(client, self.name, lambda: run(self._check(), client))
        self._last = (weakref.ref(client), mode)
        return mode

    async def amode(self, aclient: Any) -> Mode:
        """``mode`` for a ``redis.asyncio`` client."""
        found = self._modes.find(aclient, self.name)
        if found is None:
            found = self._modes.put(aclient, self.name, await arun(self._check(), aclient))
        return found

    def _mode_of(self, client: Any) -> Any:
        """A call: the mode of either kind of client."""
        return self.amode(client) if is_async(client) else self.mode(client)

    def _check(self) -> Op[Mode]:
        text = ""
        try:
            yield _command("FCALL", self.function("version"), 0)
            return Mode.FUNCTIONS
        except ResponseError as exc:
            text = str(exc).lower()
            if "unknown command" not in text and "function not found" not in text:
                raise
        if "unknown command" in text:
            for sha, src in self._scripts.values():
                exists = yield _command("SCRIPT", "EXISTS", sha)
                if not exists[0]:
                    yield _command("SCRIPT", "LOAD", src)
            return Mode.SCRIPTS
        try:
            yield self._load_call
        except NoPermissionError:
            raise LibraryMissing(f"Redis has no Functions library {self.name} and this user may not load it: "
                                 "run `baton setup` with an admin REDIS_URL (compose runs it as the setup job)"
                                 ) from None
        return Mode.FUNCTIONS

    def _load_call(self, client: Any) -> Any:
        """A call: load the library (keeping one already there) on either kind of client."""
        if not is_async(client):
            return self.load(client, replace=False)

        async def aload() -> None:
            try:
                await client.execute_command("FUNCTION", "LOAD", self.source)
            except ResponseError as exc:
                if "already exists" not in str(exc):
                    raise
        return aload()

    def forget(self, client: Any) -> None:
        """Check the server again on the next call (it restarted, flushed, or moved)."""
        self._last = None
        self._modes.forget(client, self.name)

    # --- calling -------------------------------------------------------------------------------

    def command(self, client: redis.Redis, step: str, keys: Sequence[Arg], args: Sequence[Arg]) -> list[Arg]:
        """The raw command (``FCALL`` or ``EVALSHA``) of one call, for pipelines."""
        return self.command_in(self.mode(client), step, keys, args)

    def command_in(self, mode: Mode, step: str, keys: Sequence[Arg], args: Sequence[Arg]) -> list[Arg]:
        """The raw command of one call on a server that runs the steps as ``mode`` says."""
        if mode is Mode.SCRIPTS:
            return ["EVALSHA", self._scripts[step][0], len(keys), *keys, *args]
        return ["FCALL", self.function(step), len(keys), *keys, *args]

    def mode_op(self) -> Op[Mode]:
        """The server's mode as an op (checked once per client), before queueing calls on a pipeline."""
        mode: Mode = yield self._mode_of
        return mode

    def call_op(self, step: str, keys: Sequence[Arg], args: Sequence[Arg]) -> Op[Any]:
        """Run ``step`` with ``keys`` and ``args``; its reply. A server that lost the library
        (restart without persistence, flush) is checked again and the call retried once."""
        for retry in (False, True):
            mode = yield self._mode_of
            command = self.command_in(mode, step, keys, args)
            try:
                return (yield _command(*command))
            except (NoScriptError, ResponseError) as exc:
                if retry or not is_missing(exc):
                    raise
            yield self.forget
        raise AssertionError("unreachable")

    def call(self, client: redis.Redis, step: str, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """``call_op`` on ``client``."""
        return run(self.call_op(step, keys, args), client)


def _command(*command: Arg) -> Call:
    """A call that sends ``command`` as it is."""
    return lambda c: c.execute_command(*command)


def is_missing(exc: BaseException) -> bool:
    """Whether ``exc`` says the server lacks the library or script (``NOSCRIPT``, function not found)."""
    return isinstance(exc, NoScriptError) or (isinstance(exc, ResponseError)
                                              and "function not found" in str(exc).lower())


def setup_library(client: redis.Redis) -> int:
    """Load this version's library on every primary (``baton setup``); how many got it, 0 when the server
    has no Functions (Redis < 7: clients load the steps as scripts themselves)."""
    try:
        return library().load(client)
    except ResponseError as exc:
        if "unknown command" in str(exc).lower():
            return 0
        raise


def check_library(client: redis.Redis) -> Mode:
    """Check once that ``client``'s server can run the steps (loading the library if this user may);
    ``LibraryMissing`` says to run ``baton setup``."""
    return library().mode(client)


@cache
def library() -> Library:
    """The library of this version of baton (rendered once per process)."""
    return Library(render_library())


class LuaScript:
    """One step of the library, called like a script: ``LuaScript("budget.lua")(client, keys, args)``."""

    def __init__(self, name: str) -> None:
        self.step = name.removesuffix(".lua")
        if self.step not in STEPS:
            raise ValueError(f"no step {self.step!r} in the library; steps: {', '.join(STEPS)}")

    def ensure_loaded(self, client: redis.Redis) -> None:
        """Check (once per client) that the server has the library, before pipelining calls."""
        library().mode(client)

    def queue(self, pipe: Any, client: redis.Redis, keys: Sequence[Arg], args: Sequence[Arg]) -> None:
        """Add one call to a pipeline of ``client`` (sent raw: a cluster pipeline routes it by its first key)."""
        pipe.execute_command(*library().command(client, self.step, keys, args))

    def mode_op(self) -> Op[Mode]:
        """The server's mode as an op (checked once per client), before ``queue_in``."""
        return library().mode_op()

    def queue_in(self, pipe: Any, mode: Mode, keys: Sequence[Arg], args: Sequence[Arg]) -> None:
        """Add one call to a pipeline of a server whose mode is ``mode`` (``library().mode_op()``)."""
        pipe.execute_command(*library().command_in(mode, self.step, keys, args))

    def op(self, keys: Sequence[Arg], args: Sequence[Arg]) -> Op[Any]:
        """The step as an op (``broker.drive``): for a sync or an asyncio client."""
        return library().call_op(self.step, keys, args)

    def __call__(self, client: redis.Redis, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run the step with ``keys`` and ``args``; return its reply."""
        return library().call(client, self.step, keys, args)
