"""``python -m bench``: every configuration side by side, interleaved repeats, then BENCHMARKS.md.

One embedded ``redis-server`` (its own port and data dir, never the machine's 6379) serves baton
and Celery alike. Each repeat runs every configuration once, in the same order; a
configuration's workers are started and stopped inside its slot.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.clusters import BatonCluster, CeleryCluster, Measure, measure
from bench.common import ROOT, machine
from bench.hop import measure_hops
from bench.report import write_report
from bench.served import measure_served

__all__ = ["main"]

log = logging.getLogger("bench")

MODEL_CONFIGS = ("seed", "baton-b1", "baton", "baton-2x", "celery", "ceiling")
ECHO_CONFIGS = ("baton-echo", "celery-echo")
OTHER = ("cold", "hops")
EVENT_CONFIGS = ("events-on", "events-off")
SERVED_CONFIGS = ("served", "served-replicas")
GROUPS = {"events": EVENT_CONFIGS, "model-server": ("baton", *SERVED_CONFIGS)}
"""Names ``--only`` expands: ``--only events`` runs the token-events rows (on and off) only;
``--only model-server`` the in-process batched workers and the workers on one ``serve-model``."""


def _inproc(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.inproc", *argv], env=env, cwd=ROOT, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench.inproc {argv[0]} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _seed(model: str, runs: int, env: dict[str, str]) -> Measure:
    d = _inproc(["seed", "--model", model, "--runs", str(runs), "--threads", "1"], env)
    return Measure(runs_per_s=d["runs"] / d["elapsed"], latencies=d["latencies"])


def _ceiling(model: str, runs: int, batch: int, env: dict[str, str], procs: int) -> Measure:
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as sync:
        share = [runs // procs + (i < runs % procs) for i in range(procs)]
        offsets = [sum(share[:i]) for i in range(procs)]
        children = [
            subprocess.Popen([sys.executable, "-m", "bench.inproc", "ceiling", "--model", model, "--runs", str(n),
                              "--offset", str(o), "--batch", str(batch), "--sync-dir", sync],
                             env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            for n, o in zip(share, offsets, strict=True)
        ]
        while len(list(Path(sync).glob("ready-*"))) < procs:
            if any(c.poll() not in (None, 0) for c in children):
                raise RuntimeError("a ceiling process failed")
            time.sleep(0.02)
        (Path(sync) / "go").touch()
        outs = [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in children]
    elapsed = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    return Measure(runs_per_s=runs / elapsed, cpu_s_per_run=sum(o["cpu"] for o in outs) / runs)


def _cluster(kind: str, url: str, env: dict[str, str], log_dir: Path, runs: int, lat_runs: int,
             per_role: int = 1) -> Measure:
    cluster: BatonCluster | CeleryCluster
    if kind == "baton":
        cluster = BatonCluster(url, env, log_dir, per_role=per_role)
    else:
        cluster = CeleryCluster(url, env, log_dir)
    return measure(cluster, runs, lat_runs)


def _cold(url: str, env: dict[str, str], log_dir: Path) -> Measure:
    """One planner worker started alone on an otherwise idle setup: spawn -> heartbeat, and RSS."""
    m = Measure()
    cluster = BatonCluster(url, env, log_dir, roles=("planner",))
    try:
        cluster.start(m)
    finally:
        cluster.stop(m)
    return m


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the repeats, write the report."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--runs", type=int, default=128, help="runs per throughput burst with the model")
    p.add_argument("--latency-runs", type=int, default=24, help="sequential single runs with the model")
    p.add_argument("--echo-runs", type=int, default=256, help="runs per throughput burst with BATON_MODEL=echo")
    p.add_argument("--echo-latency-runs", type=int, default=48)
    p.add_argument("--hops", type=int, default=1000, help="messages per hop measurement")
    p.add_argument("--batch-size", type=int, default=0,
                   help="BATON_BATCH_SIZE for the batched configurations and the ceiling (default: baton's)")
    p.add_argument("--only", default="",
                   help="comma-separated configurations to run (default: all); 'events' = events-on,events-off")
    p.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("baton", "celery", "kombu", "httpx", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from baton.agents.backends.twin import build_twin
    from baton.agents.settings import Settings
    from baton.broker import EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    cache = Path(os.environ.get("BATON_CACHE_DIR") or work / "cache")
    os.environ.update({"BATON_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    model = str(build_twin(cache / "models" / "tiny-gpt2-twin"))
    server = EmbeddedRedis(work / "redis").start()
    os.environ["BENCH_CELERY_URL"] = server.url
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    base_env.update({"REDIS_URL": server.url, "BATON_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1",
                     "BENCH_CELERY_URL": server.url, "TOKENIZERS_PARALLELISM": "false", "BATON_MODEL": model})
    defaults = Settings(batch_size=args.batch_size) if args.batch_size else Settings()
    if args.batch_size:
        base_env["BATON_BATCH_SIZE"] = str(args.batch_size)
    echo_env = {**base_env, "BATON_MODEL": "echo"}
    procs = os.cpu_count() or 1
    only = {c for name in filter(None, args.only.split(",")) for c in GROUPS.get(name, (name,))}
    every = (*MODEL_CONFIGS, *SERVED_CONFIGS, *EVENT_CONFIGS, *ECHO_CONFIGS, *OTHER)
    configs = [c for c in every if not only or c in only]
    results: dict[str, list[Any]] = {c: [] for c in configs}
    load_before = os.getloadavg()
    loads: list[float] = []
    started = time.time()
    try:
        for rep in range(args.repeats):
            for cfg in configs:
                log.info("repeat %d/%d: %s", rep + 1, args.repeats, cfg)
                loads.append(os.getloadavg()[0])
                log_dir = work / f"logs-{rep}-{cfg}"
                log_dir.mkdir(parents=True)
                if cfg == "seed":
                    res: Any = _seed(model, args.runs, base_env)
                elif cfg == "ceiling":
                    # the best of one process per core and one per baton worker (3): under outside
                    # load, the scheduler's per-process share would otherwise favour whichever has more
                    res = max((_ceiling(model, args.runs, defaults.batch_size, base_env, n) for n in {procs, 3}),
                              key=lambda m: m.runs_per_s)
                elif cfg == "baton-b1":
                    res = _cluster("baton", server.url, {**base_env, "BATON_BATCH_SIZE": "1"}, log_dir,
                                   args.runs, args.latency_runs)
                elif cfg in ("baton", "baton-2x"):
                    res = _cluster("baton", server.url, base_env, log_dir, args.runs, args.latency_runs,
                                   per_role=2 if cfg == "baton-2x" else 1)
                elif cfg == "celery":
                    res = _cluster("celery", server.url, base_env, log_dir, args.runs, args.latency_runs)
                elif cfg in SERVED_CONFIGS:
                    res = measure_served(server.url, model, base_env, log_dir, args.runs, args.latency_runs,
                                         replicas=procs if cfg == "served-replicas" else 1)
                elif cfg in EVENT_CONFIGS:  # batched, token events on or off, side by side in each repeat
                    flag = "1" if cfg == "events-on" else "0"
                    res = _cluster("baton", server.url, {**base_env, "BATON_STREAM_TOKENS": flag}, log_dir,
                                   args.runs, args.latency_runs)
                elif cfg == "baton-echo":
                    res = _cluster("baton", server.url, echo_env, log_dir, args.echo_runs, args.echo_latency_runs)
                elif cfg == "cold":
                    res = _cold(server.url, base_env, log_dir)
                elif cfg == "celery-echo":
                    res = _cluster("celery", server.url, echo_env, log_dir, args.echo_runs, args.echo_latency_runs)
                else:
                    res = measure_hops(server.url, args.hops)
                results[cfg].append(res)
    finally:
        server.stop()
    info = {
        "machine": machine(),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "args": vars(args),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "load_during": (min(loads, default=float("nan")), max(loads, default=float("nan"))),
        "started": started,
        "duration_s": time.time() - started,
        "batch_size": defaults.batch_size,
        "linger_ms": defaults.linger_ms,
        "torch_threads": defaults.torch_threads,
        "procs": procs,
    }
    write_report(Path(args.output), results, info)
    log.info("wrote %s (%.0f s); logs in %s", args.output, info["duration_s"], work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
