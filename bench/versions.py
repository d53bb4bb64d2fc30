"""``python -m bench.versions REV [REV ...]``: code versions of baton side by side, on this machine now.

The hot path's figures move by 2x with the host's share of this shared VM, so a figure written on
another day says little about the code: only versions measured in one sitting compare. Each REV
(a commit, a branch, a tag, or ``work`` for this checkout as it is; ``REV:NAME=VALUE,...`` runs
that version's workers with those settings, so configurations of one version compare too:
``work work:BATON_STREAM_TOKENS=0``) gets a detached worktree
and, where its ``pyproject.toml`` maps the ``baton`` namespace, its own install in a directory of
its own (``pip install --no-deps --target``); earlier layouts run from their tree. Every repeat
runs each version once, in turn (``bench/version_probe.py``, with that version's own bench
harness and its own ``redis-server``: an echo burst of ``--runs`` runs, then ``--latency-runs``
single runs), then the bench's Celery chain with the same no-op model as the yardstick. The table
gives each version's median (min–max) over the repeats, its CPU per run by process, and its
ratios to Celery's figures of the same repeat. Worktrees and installs are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.clusters import CeleryCluster, measure
from bench.common import ROOT, percentile, spread, worker_base_env
from bench.sections import write_section

__all__ = ["SECTION", "main"]

SECTION = "## Code versions side by side (bench.versions)"
PROBE = Path(__file__).with_name("version_probe.py")


@dataclass
class Version:
    """One version under test: where it runs from and what each repeat measured."""

    rev: str
    label: str
    cwd: Path
    pythonpath: str
    settings: dict[str, str] = field(default_factory=dict)
    """Environment the version's workers get (``REV:NAME=VALUE,...``)."""
    figures: list[dict[str, float]] = field(default_factory=list)


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def _prepare(rev: str, tmp: Path) -> Version:
    """A worktree of ``rev`` with what it needs on ``PYTHONPATH`` (``work``: this checkout)."""
    if rev == "work":
        dirty = " + uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no") else ""
        return Version(rev, f"this checkout ({_git('rev-parse', '--short', 'HEAD')}{dirty})", ROOT, str(ROOT))
    sha = _git("rev-parse", "--short", f"{rev}^{{commit}}")
    tree = tmp / sha
    _git("worktree", "add", "--detach", "--force", str(tree), sha)
    pyproject = (tree / "pyproject.toml").read_text()
    path = str(tree)
    if "package-dir" in pyproject and '"baton"' in pyproject:  # the baton namespace: install this version's mapping
        site = tmp / f"{sha}-site"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(site), str(tree)], check=True, capture_output=True)
        path = f"{site}{os.pathsep}{tree}"
    subject = _git("log", "-1", "--format=%ad %s", "--date=format:%Y-%m-%d", sha)
    return Version(rev, f"`{sha}` ({subject[:60]}{'...' if len(subject) > 60 else ''})", tree, path)


def _with_settings(prepared: dict[str, Version], spec: str, tmp: Path) -> Version:
    """``spec`` (``REV`` or ``REV:NAME=VALUE,...``) as a Version; one worktree per REV."""
    rev, _, extra = spec.partition(":")
    items = [item for item in extra.split(",") if item]
    if any("=" not in item for item in items):
        raise SystemExit(f"bench.versions: {spec!r}: settings are NAME=VALUE items separated by commas")
    settings = dict(item.split("=", 1) for item in items)
    if rev not in prepared:
        prepared[rev] = _prepare(rev, tmp)
    base = prepared[rev]
    label = base.label + (" with " + ", ".join(f"`{k}={val}`" for k, val in settings.items()) if settings else "")
    return Version(spec, label, base.cwd, base.pythonpath, settings=settings)


def _probe(v: Version, runs: int, latency_runs: int) -> dict[str, float]:
    env = {k: val for k, val in os.environ.items() if not k.startswith("BATON_")}
    env["PYTHONPATH"] = v.pythonpath
    sets = [f"--set={k}={val}" for k, val in v.settings.items()]
    out = subprocess.run([sys.executable, str(PROBE), "--runs", str(runs), "--latency-runs", str(latency_runs), *sets],
                         cwd=v.cwd, env=env, capture_output=True, text=True, check=False, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{v.rev}: the probe failed:\n{out.stderr[-3000:]}")
    d = json.loads(out.stdout.strip().splitlines()[-1])
    lat = d.pop("latencies")
    return {**d, "p50": percentile(lat, 50), "p95": percentile(lat, 95)}


def _celery(url: str, work: Path, runs: int, latency_runs: int) -> dict[str, float]:
    """The Celery chain's echo figures on ``url`` (one server for every repeat: a Celery app keeps
    the result store it first connected to)."""
    env = {**worker_base_env(url, work), "BATON_MODEL": "echo"}
    os.environ["BENCH_CELERY_URL"] = url
    m = measure(CeleryCluster(url, env, work), runs, latency_runs)
    return {"runs_per_s": m.runs_per_s, "p50": percentile(m.latencies, 50)}


def _cell(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    lo, mid, hi = spread([v * scale for v in values])
    return f"**{mid:,.{digits}f}** ({lo:,.{digits}f}–{hi:,.{digits}f})"


def _table(versions: list[Version], celery: list[dict[str, float]]) -> list[str]:
    lines = ["| version | echo runs/s | single-run p50, ms | p95, ms | CPU µs per run: workers / redis-server / driver "
             "| runs/s ÷ Celery's | p50 ÷ Celery's |", "|---|---|---|---|---|---|---|"]
    for v in versions:
        f = v.figures
        runs_ratio = [x["runs_per_s"] / c["runs_per_s"] for x, c in zip(f, celery, strict=True)]
        p50_ratio = [x["p50"] / c["p50"] for x, c in zip(f, celery, strict=True)]
        cpu = " / ".join(f"{statistics.median(x[k] for x in f) * 1e6:.0f}"
                         for k in ("workers_cpu_s", "redis_cpu_s", "driver_cpu_s"))
        lines.append(f"| {v.label} | {_cell([x['runs_per_s'] for x in f], digits=0)} "
                     f"| {_cell([x['p50'] for x in f], 1000, 2)} | {_cell([x['p95'] for x in f], 1000, 2)} | {cpu} "
                     f"| {_cell(runs_ratio, digits=2)} | {_cell(p50_ratio, digits=2)} |")
    lines.append(f"| Celery chain, no-op model (the yardstick) | {_cell([c['runs_per_s'] for c in celery], digits=0)} "
                 f"| {_cell([c['p50'] for c in celery], 1000, 2)} | | | | |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.versions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("revs", nargs="+", help="commits, branches or tags; 'work' for this checkout as it is; "
                   "REV:NAME=VALUE,... to run that version's workers with those settings")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--runs", type=int, default=1000, help="runs per echo burst")
    p.add_argument("--latency-runs", type=int, default=100, help="single runs one at a time")
    p.add_argument("--celery-runs", type=int, default=256, help="chains per Celery burst")
    p.add_argument("--write", action="store_true", help=f"put the table into BENCHMARKS.md ({SECTION!r})")
    args = p.parse_args(argv)
    from baton.broker import EmbeddedRedis

    tmp = Path(tempfile.mkdtemp(prefix="baton-versions-"))
    versions: list[Version] = []
    celery: list[dict[str, float]] = []
    loads = [os.getloadavg()]
    started = time.monotonic()
    prepared: dict[str, Version] = {}
    """One Version per REV: its worktree, removed at the end."""
    server = EmbeddedRedis(tmp / "celery-redis").start()
    try:
        versions = [_with_settings(prepared, spec, tmp) for spec in args.revs]
        for rep in range(args.repeats):
            for v in versions:
                v.figures.append(_probe(v, args.runs, args.latency_runs))
                print(f"repeat {rep + 1}/{args.repeats}: {v.rev}: {v.figures[-1]['runs_per_s']:.0f} runs/s, p50 "
                      f"{v.figures[-1]['p50'] * 1000:.2f} ms (load {os.getloadavg()[0]:.2f})", flush=True)
            celery.append(_celery(server.url, tmp, args.celery_runs, args.latency_runs))
            print(f"repeat {rep + 1}/{args.repeats}: Celery: {celery[-1]['runs_per_s']:.0f} runs/s, p50 "
                  f"{celery[-1]['p50'] * 1000:.2f} ms", flush=True)
    finally:
        server.stop()
        for v in prepared.values():
            if v.cwd != ROOT:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(v.cwd)],
                               capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    loads.append(os.getloadavg())
    command = " ".join(["python -m bench.versions", *(argv if argv is not None else sys.argv[1:])])
    header = (f"`{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{(time.monotonic() - started) / 60:.1f} min; 1-min load average {loads[0][0]:.2f} before, "
              f"{loads[1][0]:.2f} after, on {os.cpu_count()} cores): {args.repeats} repeats, each version in turn "
              f"then Celery; echo bursts of {args.runs} runs, {args.latency_runs} single runs; cells are the "
              "median (min–max) of the repeats, ratios taken within each repeat.")
    table = _table(versions, celery)
    print(f"\n{header}\n\n" + "\n".join(table))
    if args.write:
        write_section(ROOT / "BENCHMARKS.md", SECTION, [SECTION, "", header, "", *table])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
