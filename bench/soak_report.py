"""The soak's verdict, table and plot (``bench.soak`` writes the samples).

Rule, for each watched series over the judged window (the last 20 minutes, or the last two
thirds of a shorter soak): growth = median of the window's last ``EDGE`` share minus the median
of its first ``EDGE`` share, relative to the first median (at least ``floor``: a small count
such as pending entries is not judged in percent of nearly nothing). The series fails when
growth > 5%. The least-squares slope times the window, over the mean level, is shown beside it.
p99 latency: the p99 of the runs that finished in each 5-minute block after the first must stay
within 2x the first block's. Lost runs: 0. Each block shows the machine's median load average
beside its latencies (the rule does not use it: it tells the reader the machine from the program).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from bench.common import percentile

__all__ = ["WATCHED", "judge", "plot_samples", "print_report"]

GROWTH_LIMIT = 0.05
EDGE = 0.15
WINDOW_S = 20 * 60
BLOCK_S = 5 * 60
P99_LIMIT = 2.0
# series -> (label, floor of the level growth is measured against)
WATCHED: dict[str, tuple[str, float]] = {
    "rss_total_mib": ("worker RSS, total MiB", 1.0),
    "used_memory_mib": ("Redis used_memory MiB", 1.0),
    "keys": ("Redis keys", 50),
    "task_len": ("task stream entries", 50),
    "results_len": ("results stream entries", 50),
    "events_len": ("event log entries", 50),
    "dead_len": ("dead-letter entries", 50),
    "pending": ("pending entries", 50),
}


def _window(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not samples:
        return []
    last = samples[-1]["t"]
    span = min(WINDOW_S, last * 2 / 3)
    return [s for s in samples if s["t"] >= last - span]


def _growth(window: list[dict[str, Any]], name: str, floor: float) -> dict[str, float | bool]:
    values = [float(s[name]) for s in window]
    ts = [float(s["t"]) for s in window]
    n = max(1, int(len(values) * EDGE))
    first, last = statistics.median(values[:n]), statistics.median(values[-n:])
    level = max(first, floor)
    growth = (last - first) / level
    slope = statistics.linear_regression(ts, values).slope if len(set(ts)) > 1 else 0.0
    span = ts[-1] - ts[0] if ts else 0.0
    fitted = slope * span / max(statistics.fmean(values), floor)
    return {"first": first, "last": last, "growth": growth, "fitted": fitted, "ok": growth <= GROWTH_LIMIT}


def _p99_blocks(latencies: list[list[float]], end_s: float,
                samples: list[dict[str, Any]] | None = None) -> list[dict[str, float]]:
    blocks: list[dict[str, float]] = []
    t = 0.0
    while t < end_s:
        vals = [lat for at, lat in latencies if t <= at < t + BLOCK_S]
        load = [s["loadavg"] for s in samples or [] if t <= s["t"] < t + BLOCK_S]
        if vals:
            blocks.append({"from_s": t, "runs": len(vals), "p50_s": percentile(vals, 50),
                           "p99_s": percentile(vals, 99), "loadavg": statistics.median(load) if load else float("nan")})
        t += BLOCK_S
    return blocks


def judge(data: dict[str, Any]) -> dict[str, Any]:
    """The verdict of one soak: growth per series, p99 per block, lost runs, and ``ok``."""
    samples = data["samples"]
    window = _window(samples)
    growth = {name: _growth(window, name, floor) for name, (_, floor) in WATCHED.items()} if window else {}
    end_s = samples[-1]["t"] if samples else 0.0
    blocks = _p99_blocks(data["latencies"], end_s + 1, samples)
    base = blocks[0]["p99_s"] if blocks else float("nan")
    p99_ok = all(b["p99_s"] <= P99_LIMIT * base for b in blocks[1:])
    ok = bool(window) and all(g["ok"] for g in growth.values()) and p99_ok and data["lost"] == 0
    return {"ok": ok, "window_s": (window[-1]["t"] - window[0]["t"]) if window else 0.0, "growth": growth,
            "p99_blocks": blocks, "p99_ok": p99_ok, "lost": data["lost"],
            "loadavg": [min(s["loadavg"] for s in samples), statistics.median(s["loadavg"] for s in samples),
                        max(s["loadavg"] for s in samples)] if samples else [],
            "cpu_share": statistics.median(s["cpu_share"] for s in samples) if samples else float("nan")}


def print_report(data: dict[str, Any], console: Any) -> None:
    """Print the verdict as rich tables."""
    from rich.table import Table

    v = data["verdict"]
    t = Table("series", "first", "last", "growth", "fitted over window", "ok",
              title=f"soak: growth over the last {v['window_s'] / 60:.1f} min (limit {GROWTH_LIMIT:.0%})")
    for name, g in v["growth"].items():
        t.add_row(WATCHED[name][0], f"{g['first']:.1f}", f"{g['last']:.1f}", f"{g['growth']:+.1%}",
                  f"{g['fitted']:+.1%}", "yes" if g["ok"] else "NO")
    console.print(t)
    b = Table("block from, min", "runs", "p50, s", "p99, s", "load average (median)",
              title=f"latency per {BLOCK_S // 60}-minute block (p99 limit {P99_LIMIT:g}x the first)")
    for blk in v["p99_blocks"]:
        b.add_row(f"{blk['from_s'] / 60:.0f}", str(blk["runs"]), f"{blk['p50_s']:.2f}", f"{blk['p99_s']:.2f}",
                  f"{blk.get('loadavg', float('nan')):.1f}")
    console.print(b)
    c = Table("measure", "value", title="runs")
    for k in ("submitted", "done", "failed", "lost", "restarts", "crashes", "kills", "redis_restarts",
              "model_down_s"):
        c.add_row(k, str(data.get(k, "-")))
    c.add_row("worker CPU share of the machine (median)", f"{v['cpu_share']:.0%}")
    c.add_row("load average 1 min (min/median/max)", "/".join(f"{x:.1f}" for x in v["loadavg"]))
    c.add_row("verdict", "PASS" if v["ok"] else "FAIL")
    console.print(c)


def plot_samples(data: dict[str, Any], path: Path) -> None:
    """RSS, Redis memory, stream lengths and p50/p99 over time, one panel each, to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = data["samples"]
    minutes = [x["t"] / 60 for x in s]
    fig, ax = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    ax[0].plot(minutes, [x["rss_total_mib"] for x in s], label="all workers")
    slots = sorted({k for x in s for k in x["rss_mib"]})
    for role in sorted({k.rsplit(".", 1)[0] for k in slots}):
        ax[0].plot(minutes, [sum(v for k, v in x["rss_mib"].items() if k.rsplit(".", 1)[0] == role) for x in s],
                   label=role, linewidth=0.8)
    ax[0].set_ylabel("RSS, MiB")
    ax[0].set_yscale("log")
    ax[0].legend(fontsize=6, ncol=3)
    ax[1].plot(minutes, [x["used_memory_mib"] for x in s], label="used_memory, MiB")
    ax[1].set_ylabel("Redis, MiB")
    k2 = ax[1].twinx()
    k2.plot(minutes, [x["keys"] for x in s], color="tab:orange", label="keys")
    k2.set_ylabel("keys")
    for name in ("task_len", "results_len", "events_len", "dead_len", "pending"):
        ax[2].plot(minutes, [x[name] for x in s], label=WATCHED[name][0])
    ax[2].set_ylabel("entries")
    ax[2].legend(fontsize=7)
    ax[3].plot(minutes, [x["p50_s"] for x in s], label="p50")
    ax[3].plot(minutes, [x["p99_s"] for x in s], label="p99")
    ax[3].set_ylabel("latency of runs finished in the 10 s window, s")
    ax[3].set_xlabel("minutes")
    ax[3].legend(fontsize=7, loc="upper left")
    la = ax[3].twinx()
    la.plot(minutes, [x["loadavg"] for x in s], color="0.5", linestyle=":", label="load average (1 min)")
    la.set_ylabel("load average")
    la.legend(fontsize=7, loc="upper right")
    window = data["verdict"]["window_s"] / 60
    for a in ax:
        a.axvspan(minutes[-1] - window, minutes[-1], color="0.9", zorder=0)
    fig.suptitle(f"soak {data['config']['minutes']} min, {data['config']['rate']} runs/s: "
                 f"{'PASS' if data['verdict']['ok'] else 'FAIL'} (shaded: judged window)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(data: dict[str, Any]) -> str:
    """The verdict as Markdown tables (for BENCHMARKS.md)."""
    v = data["verdict"]
    rows = ["| series | first 3 min of window | last 3 min | growth | fitted slope x window | ok |",
            "|---|---|---|---|---|---|"]
    for name, g in v["growth"].items():
        rows.append(f"| {WATCHED[name][0]} | {g['first']:.1f} | {g['last']:.1f} | {g['growth']:+.1%} "
                    f"| {g['fitted']:+.1%} | {'yes' if g['ok'] else '**no**'} |")
    rows += ["", "| 5-minute block from, min | runs finished | p50, s | p99, s | p99 / first block's | load average |",
             "|---|---|---|---|---|---|"]
    base = v["p99_blocks"][0]["p99_s"] if v["p99_blocks"] else float("nan")
    for b in v["p99_blocks"]:
        rows.append(f"| {b['from_s'] / 60:.0f} | {b['runs']} | {b['p50_s']:.2f} | {b['p99_s']:.2f} "
                    f"| {b['p99_s'] / base:.2f} | {b.get('loadavg', float('nan')):.1f} |")
    lo, med, hi = v["loadavg"]
    rows += ["", f"Runs: {data['submitted']} submitted, {data['done']} done, {data['failed']} failed, "
             f"**{data['lost']} lost**; {data['restarts']} worker restarts (SIGTERM), {data.get('kills', 0)} worker "
             f"SIGKILLs, {data.get('redis_restarts', 0)} Redis restarts, model down {data.get('model_down_s', 0)} s, "
             f"{data['crashes']} crashes. "
             f"Worker CPU, share of the machine's cores (median of the samples): {v['cpu_share']:.0%}. "
             f"Load average (1 min) during the run: min {lo:.1f}, median {med:.1f}, max {hi:.1f} on "
             f"{os.cpu_count()} cores. Verdict: **{'PASS' if v['ok'] else 'FAIL'}**."]
    return "\n".join(rows)
