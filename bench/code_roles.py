"""Code roles against template roles: ``python -m bench.code_roles --write``.

Four figures, each side by side in one run on one embedded ``redis-server`` (never the machine's
6379), configurations interleaved in every repeat; workers are ``baton worker`` processes:

- **notebook**: the seed chain with the twin of tiny-gpt2, batched, as the TOML seed (3 one-role
  workers) and as ``examples/notebook_app.py`` (3 ``baton worker --app`` workers): a burst of
  ``--runs`` runs, runs/s, and whether every run's result is identical.
- **coalescing**: 64 concurrent handlers (``bench/apps.py:two_calls``, ``--concurrency 64``, echo
  model) making 2 model calls each, in one worker in this process: model calls against backend calls.
- **journal**: the notebook app on the echo model with ``BATON_JOURNAL`` on and off: runs/s.
- **latency**: single runs, one after another, of one template role (``bench/single_template.toml``)
  and one code role doing the same (``bench/apps.py:single``), twin model: p50 seconds.

``--write`` puts the tables into BENCHMARKS.md (section "Code roles"). Not a test: a measurement.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench.common import ROOT, percentile, task_text
from bench.sections import write_section

__all__ = ["main"]

SECTION = "## Code roles"
NOTEBOOK_APP = "examples.notebook_app:app"


class Workers:
    """``baton worker`` processes of one configuration (killed at the end)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.procs = env, log_dir, []  # type: ignore[var-annotated]

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> None:
        with open(self.log_dir / f"worker-{len(self.procs)}.log", "wb") as log:
            self.procs.append(subprocess.Popen([sys.executable, "-m", "baton", "worker", *args],
                                               env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                               cwd=ROOT))

    def wait_ready(self, client: redis.Redis, timeout: float = 300) -> None:
        from baton.broker import Keys, live_workers

        deadline = time.monotonic() + timeout
        while len(live_workers(client, Keys())) < len(self.procs):
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                raise RuntimeError(f"workers did not start; see {self.log_dir}")
            time.sleep(0.05)

    def stop(self, client: redis.Redis) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        client.flushall()


def _submit(client: redis.Redis, workflow: str, texts: list[str]) -> list[str]:
    from baton.agents.workflow.loader import named
    from baton.broker import Keys, submit
    from baton.protocol import Task, new_id

    keys = Keys()
    wf = named(workflow, client=client, keys=keys)
    return [submit(client, keys, Task(run_id=new_id(), role=wf.entry, task=t, workflow=wf.name)) for t in texts]


def _wait(client: redis.Redis, run_ids: list[str], timeout: float = 900) -> dict[str, dict[str, str]]:
    from baton.broker import Keys, wait_for_runs

    done = wait_for_runs(client, Keys(), run_ids, timeout=timeout)
    if len(done) < len(run_ids):
        raise RuntimeError(f"only {len(done)} of {len(run_ids)} runs finished")
    return done


def _burst(client: redis.Redis, workflow: str, texts: list[str]) -> tuple[float, list[str]]:
    """Submit ``texts`` at once; runs/s until the last result, and the results in order."""
    t0 = time.monotonic()
    ids = _submit(client, workflow, texts)
    done = _wait(client, ids)
    elapsed = time.monotonic() - t0
    bad = [done[i].get("error", "") for i in ids if done[i].get("status") != "done"]
    if bad:
        raise RuntimeError(f"{len(bad)} runs did not finish well: {bad[0]}")
    return len(ids) / elapsed, [done[i].get("result", "") for i in ids]


def _configured(env: dict[str, str], log_dir: Path, client: redis.Redis, spawns: list[tuple[str, ...]],
                body: Callable[[], Any], extra_env: dict[str, str] | None = None) -> Any:
    w = Workers({**env, **(extra_env or {})}, log_dir)
    try:
        for args in spawns:
            w.spawn(*args)
        w.wait_ready(client)
        return body()
    finally:
        w.stop(client)


SEED_ROLES = ("planner", "researcher", "summarizer")


def notebook(env: dict[str, str], log_dir: Path, client: redis.Redis, runs: int) -> dict[str, Any]:
    texts = [task_text(i) for i in range(runs)]
    toml = _configured(env, log_dir, client, [(r,) for r in SEED_ROLES], lambda: _burst(client, "seed", texts))
    app = _configured(env, log_dir, client, [("--app", NOTEBOOK_APP, r) for r in SEED_ROLES],
                      lambda: _burst(client, "notebook", texts))
    return {"toml": toml[0], "app": app[0], "identical": toml[1] == app[1]}


def journal(env: dict[str, str], log_dir: Path, client: redis.Redis, runs: int) -> dict[str, float]:
    texts = [task_text(i) for i in range(runs)]
    out = {}
    for on in ("1", "0"):
        out[on] = _configured(env, log_dir, client, [("--app", NOTEBOOK_APP, r) for r in SEED_ROLES],
                              lambda: _burst(client, "notebook", texts)[0],
                              {"BATON_MODEL": "echo", "BATON_JOURNAL": on})
    return {"on": out["1"], "off": out["0"]}


def latency(env: dict[str, str], log_dir: Path, client: redis.Redis, runs: int) -> dict[str, float]:
    def sequential(workflow: str) -> list[float]:
        times = []
        for i in range(runs):
            t0 = time.monotonic()
            _wait(client, _submit(client, workflow, [task_text(i)]))
            times.append(time.monotonic() - t0)
        return times[1:]  # the first run warms the worker up

    template = _configured(env, log_dir, client, [("--workflow", str(ROOT / "bench" / "single_template.toml"),
                                                   "planner")],
                           lambda: sequential(str(ROOT / "bench" / "single_template.toml")))
    code = _configured(env, log_dir, client, [("--app", "bench.apps:single", "planner")],
                       lambda: sequential("bench_code_single"))
    return {"template": percentile(template, 50), "code": percentile(code, 50)}


def coalescing(url: str, handlers: int = 64) -> dict[str, int]:
    """``handlers`` runs of the two-calls app through one in-process worker with ``--concurrency``."""
    from baton.agents.app import AppRunner, load_app
    from baton.agents.backends import load_backend
    from baton.agents.runtime.worker import Worker
    from baton.agents.settings import Settings
    from baton.agents.workflow.registry import publish_workflow
    from baton.broker import Keys

    class Counting:
        def __init__(self) -> None:
            self.inner = load_backend("echo")
            self.name = self.inner.name
            self.calls = 0
            self.prompts = 0

        def generate(self, prompts: Any, **kw: Any) -> Any:
            self.calls += 1
            self.prompts += len(prompts)
            return self.inner.generate(prompts, **kw)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    client = redis.Redis.from_url(url)
    app = load_app("bench.apps:two_calls")
    wf = app.workflow()
    s = Settings(redis_url=url, model="echo", block_ms=100, stream_tokens=False)
    publish_workflow(client, Keys(), wf)
    backend = Counting()
    w = Worker(s, wf, "thinker", backend=backend, runner=AppRunner.for_settings(s), concurrency=handlers)  # type: ignore[arg-type]
    ids = _submit(client, wf.name, [task_text(i) for i in range(handlers)])
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    try:
        _wait(client, ids, timeout=300)
    finally:
        w.stopping.set()
        t.join(30)
    client.flushall()
    return {"handlers": handlers, "model_calls": backend.prompts, "backend_calls": backend.calls}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.code_roles", description=__doc__)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--runs", type=int, default=96, help="runs per notebook burst (twin)")
    p.add_argument("--echo-runs", type=int, default=600, help="runs per journal burst (echo)")
    p.add_argument("--latency-runs", type=int, default=21, help="single runs per latency configuration")
    p.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    args = p.parse_args(argv)
    from baton.agents.backends.resolve import resolve_model
    from baton.broker import EmbeddedRedis

    load_before = os.getloadavg()
    rows: dict[str, list[Any]] = {"notebook": [], "journal": [], "latency": [], "coalescing": []}
    with tempfile.TemporaryDirectory(prefix="bench-code-") as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        log_dir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        env |= {"REDIS_URL": server.url, "BATON_MODEL": resolve_model("sshleifer/tiny-gpt2"),
                "BATON_LOG_LEVEL": "WARNING", "BATON_BLOCK_MS": "200"}
        client = redis.Redis.from_url(server.url)
        for r in range(args.repeats):
            rows["notebook"].append(notebook(env, log_dir, client, args.runs))
            rows["journal"].append(journal(env, log_dir, client, args.echo_runs))
            rows["latency"].append(latency(env, log_dir, client, args.latency_runs))
            rows["coalescing"].append(coalescing(server.url))
            print(f"repeat {r + 1}: " + "; ".join(f"{k}={v[-1]}" for k, v in rows.items()), flush=True)
    load_after = os.getloadavg()
    lines = _report(rows, args, load_before, load_after)
    print("\n".join(lines))
    if args.write:
        write_section(ROOT / "BENCHMARKS.md", SECTION, lines)
    return 0


def _med(values: list[float]) -> float:
    return statistics.median(values)


def _report(rows: dict[str, list[Any]], args: argparse.Namespace, before: tuple[float, ...],
            after: tuple[float, ...]) -> list[str]:
    nb, jr, lat, co = rows["notebook"], rows["journal"], rows["latency"], rows["coalescing"]
    toml, app = _med([r["toml"] for r in nb]), _med([r["app"] for r in nb])
    on, off = _med([r["on"] for r in jr]), _med([r["off"] for r in jr])
    tpl, code = _med([r["template"] for r in lat]), _med([r["code"] for r in lat])
    model_calls, backend_calls = sum(r["model_calls"] for r in co), sum(r["backend_calls"] for r in co)
    identical = all(r["identical"] for r in nb)
    ok = lambda met: "met" if met else "**not met**"  # noqa: E731
    cmd = (f"python -m bench.code_roles --repeats {args.repeats} --runs {args.runs} --echo-runs {args.echo_runs} "
           f"--latency-runs {args.latency_runs} --write")
    return [
        SECTION, "",
        f"`{cmd}` (medians of {args.repeats} interleaved repeats; load average "
        f"{before[0]:.2f} before, {after[0]:.2f} after, on a shared 2-core machine).", "",
        "| figure | template / reference | code role | ratio | target |",
        "|---|---|---|---|---|",
        f"| notebook chain, twin, batched burst of {args.runs} runs (runs/s) | {toml:.2f} (TOML seed) | "
        f"{app:.2f} (`examples/notebook_app.py`) | {app / toml:.2f}x | >= 0.9x: {ok(app >= 0.9 * toml)}; "
        f"outputs identical: {'yes' if identical else '**no**'} |",
        f"| 64 concurrent handlers x 2 model calls, echo (calls) | {model_calls} model calls | {backend_calls} "
        f"backend calls | {backend_calls / max(1, model_calls):.3f} | <= 1/8: {ok(backend_calls * 8 <= model_calls)} |",
        f"| journal cost, notebook app on echo, burst of {args.echo_runs} (runs/s) | {off:.1f} (journal off) | "
        f"{on:.1f} (journal on) | {on / off:.2f}x | >= 0.9x: {ok(on >= 0.9 * off)} |",
        f"| single run, one role, twin, p50 of {args.latency_runs - 1} (s) | {tpl:.3f} (template) | {code:.3f} "
        f"(code) | {code / tpl:.2f}x | <= 1.1x: {ok(code <= 1.1 * tpl)} |",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
