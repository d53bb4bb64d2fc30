"""``python -m bench.hotprof MODE N``: the hot path of one echo worker, profiled in-process.

One worker of the seed chain's researcher (echo model, baton's defaults; ``one``: batch size 1)
in this process, on its own embedded ``redis-server``. Modes: ``burst`` (N tasks submitted, then
read and processed in batches), ``one`` (the same with ``BATON_BATCH_SIZE=1``) and ``lone`` (N
times: submit one task, read it, process it). Prints the round trips and the commands in them
(redis-py's ``send_packed_command`` counted; ``lone`` counts the submits too), Redis'
``INFO commandstats`` and CPU over the hops and, with ``--profile``, a cProfile of the hops.

Instruction counts that repeat on a shared machine (only the hops are instrumented)::

    BENCH_CALLGRIND=1 valgrind --tool=callgrind --instr-atstart=no .venv/bin/python -m bench.hotprof burst 512

then ``Collected`` / N is the instructions per hop (the counting wrapper is off under callgrind).
Redis' own instructions over the same hops: put a ``redis-server`` first on ``PATH`` that runs
``exec valgrind --tool=callgrind --instr-atstart=no /usr/bin/redis-server "$@"`` and set
``BENCH_CALLGRIND_REDIS=1`` (its ``Collected`` / N when the server exits).
``--profile`` sorts by ``BENCH_SORT`` (default ``tottime``; ``cumulative``...) and prints the top ``BENCH_TOP`` (30);
``BENCH_PROFILE_OUT=FILE`` also writes the stats there (``pstats``).
Not a test: a measurement (bench/NOTES.md, "The hot path, profiled a third time").
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import redis.connection as rc

CALLGRIND = bool(os.environ.get("BENCH_CALLGRIND"))
REDIS_CALLGRIND = bool(os.environ.get("BENCH_CALLGRIND_REDIS"))
"""Toggle the instrumentation of the ``redis-server`` too (one started under callgrind: see the module)."""


class _Counter:
    """Round trips (one ``send_packed_command`` each) and the commands they carried."""

    def __init__(self) -> None:
        self.round_trips = 0
        self.commands: collections.Counter[str] = collections.Counter()
        self._orig = rc.AbstractConnection.send_packed_command

    def install(self) -> None:
        orig, counter = self._orig, self

        def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            counter.round_trips += 1
            data = command if isinstance(command, bytes | bytearray) else b"".join(bytes(c) for c in command)
            parts, i = data.split(b"\r\n"), 0
            while i < len(parts):
                if parts[i].startswith(b"*"):
                    if i + 2 < len(parts):
                        counter.commands[parts[i + 2].upper().decode(errors="replace")] += 1
                    i += 1 + 2 * int(parts[i][1:])
                else:
                    i += 1
            orig(conn, command, check_health)

        rc.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]

    def clear(self) -> None:
        self.round_trips = 0
        self.commands.clear()


def _instrument(on: bool, redis_pid: int | None) -> None:
    pids = [os.getpid()] if CALLGRIND else []
    pids += [redis_pid] if REDIS_CALLGRIND and redis_pid else []
    for pid in pids:
        subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(pid)], capture_output=True,
                       check=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hotprof", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("burst", "one", "lone"))
    p.add_argument("n", type=int)
    p.add_argument("--profile", action="store_true", help="cProfile the hops (process time)")
    p.add_argument("--no-count", action="store_true", help="time the hops without the round-trip counter's wrapper")
    p.add_argument("--model", default="echo", help="echo (default) or a model to load in-process, e.g. the twin's path")
    args = p.parse_args(argv)

    counter = _Counter()
    counting = not (CALLGRIND or args.no_count)
    if counting:
        counter.install()
    from baton.agents.backends import EchoBackend, load_backend
    from baton.agents.runtime.worker import Worker
    from baton.agents.settings import Settings
    from baton.agents.workflow.spec import SEED
    from baton.broker import EmbeddedRedis, submit
    from baton.protocol import Task

    work = Path(tempfile.mkdtemp(prefix="baton-hotprof-"))
    server = EmbeddedRedis(work / "redis").start()
    try:
        settings = Settings(redis_url=server.url, **({"batch_size": 1} if args.mode == "one" else {}))
        worker = Worker(settings, SEED, "researcher", backend=EchoBackend() if args.model == "echo" else
                        load_backend(args.model, threads=1))
        worker.load()
        worker.streams.ensure_groups()
        driver = redis.Redis.from_url(server.url)

        def publish(i: int | str) -> None:
            submit(driver, worker.keys, Task(run_id=f"run{i}", role="researcher", workflow=SEED.name, hop=1,
                                             task="Research and elaborate: " + "x" * 300))

        spent = [0.0, 0.0]  # CPU of the reads and of the processing (the hops only, not the submits)

        def drain() -> int:
            c0 = time.process_time()
            entries = worker.read(False)
            c1 = time.process_time()
            worker.process(entries)
            spent[0] += c1 - c0
            spent[1] += time.process_time() - c1
            return len(entries)

        for i in range(5):  # warm: connections, the Functions library, imports
            publish(f"warm{i}")
            while drain():
                pass
        prof = cProfile.Profile(time.process_time) if args.profile else None
        hops = 0
        if args.mode != "lone":
            for i in range(args.n):
                publish(i)
        counter.clear()
        spent[:] = [0.0, 0.0]
        driver.config_resetstat()
        redis0: Any = driver.info("cpu")
        cpu0, t0 = time.process_time(), time.perf_counter()
        while hops < args.n:
            if args.mode == "lone":
                publish(hops)
            _instrument(True, server.proc.pid if server.proc else None)
            if prof:
                prof.enable()
            hops += drain()
            if prof:
                prof.disable()
            _instrument(False, server.proc.pid if server.proc else None)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        stats: Any = driver.info("commandstats")
        redis_cpu: Any = driver.info("cpu")
        print(f"{args.mode}: {hops} hops, {wall / hops * 1e6:.0f} us wall and {cpu / hops * 1e6:.0f} us CPU of "
              f"this process per hop (load average {os.getloadavg()[0]:.2f}); of which the reads "
              f"{spent[0] / hops * 1e6:.0f} us and the processing {spent[1] / hops * 1e6:.0f} us")
        if counting:
            print(f"round trips per hop {counter.round_trips / hops:.3f}, commands per hop "
                  f"{sum(counter.commands.values()) / hops:.2f}: {dict(counter.commands.most_common())}")
        redis_s = sum(redis_cpu[k] - redis0[k] for k in ("used_cpu_user", "used_cpu_sys"))
        print(f"redis-server CPU per hop: {redis_s / hops * 1e6:.0f} us (user + system, over the hops"
              f"{' and their submits' if args.mode == 'lone' else ''})")
        for name, s in sorted(stats.items(), key=lambda kv: -kv[1]["usec"])[:10]:
            print(f"  {name}: {s['calls']} calls, {s['usec_per_call']} us per call")
        if prof:
            order, top = os.environ.get("BENCH_SORT", "tottime"), int(os.environ.get("BENCH_TOP", "30"))
            pstats.Stats(prof).sort_stats(order).print_stats(top)
            if out := os.environ.get("BENCH_PROFILE_OUT"):
                prof.dump_stats(out)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
