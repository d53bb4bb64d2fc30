"""Turn the repeats into BENCHMARKS.md: the table, the hop prices, the ratios against the targets."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.clusters import Measure
from bench.common import percentile, spread
from bench.sections import merge_sections

__all__ = ["write_report"]

NOTES = Path(__file__).with_name("NOTES.md")

LABELS = {
    "seed": "seed notebook, 3 Agents in one process (1 torch thread)",
    "baton-b1": "baton, 1 worker/role, unbatched (BATON_BATCH_SIZE=1)",
    "baton": "baton, 1 worker/role, batched (defaults)",
    "baton-2x": "baton, 2 workers/role, batched (defaults)",
    "served": "baton, 1 worker/role on one batching `baton serve-model --replicas 1` (BATON_MODEL=http://...)",
    "served-replicas": "baton, 1 worker/role on one batching `baton serve-model --replicas <cores>` (its default)",
    "events-on": "baton, 1 worker/role, batched, token events on (BATON_STREAM_TOKENS=1, the default)",
    "events-off": "baton, 1 worker/role, batched, token events off (BATON_STREAM_TOKENS=0)",
    "celery": "Celery chain, 1 prefork worker/role (concurrency 1)",
    "ceiling": "ceiling: in-process batched generation, no broker (best of 1 process/core and 3 processes)",
    "baton-echo": "baton, no-op model (BATON_MODEL=echo)",
    "celery-echo": "Celery chain, no-op model (BATON_MODEL=echo)",
    "cold": "baton, one planner worker started alone (cold start, RSS after start)",
}


def _fmt(values: tuple[float, float, float], scale: float = 1.0, digits: int = 1) -> str:
    lo, mid, hi = (v * scale for v in values)
    if mid != mid:
        return "–"
    return f"**{mid:.{digits}f}** ({lo:.{digits}f}–{hi:.{digits}f})"


def _per_repeat(ms: list[Measure], fn: Callable[[Measure], float]) -> tuple[float, float, float]:
    return spread([fn(m) for m in ms])


def _median(ms: list[Measure], fn: Callable[[Measure], float]) -> float:
    return _per_repeat(ms, fn)[1]


def _p(q: float) -> Callable[[Measure], float]:
    return lambda m: percentile(m.latencies, q)


def _max_or_nan(values: list[float]) -> float:
    return max(values) if values else float("nan")


def _table(results: dict[str, list[Any]]) -> list[str]:
    rows = [
        "| configuration | runs/s | p50 latency, ms | p95 latency, ms | worker RSS, MiB | worker peak RSS, MiB"
        " | spawn→ready, s | spawn→first result, s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cfg, label in LABELS.items():
        ms: list[Measure] = results.get(cfg, [])
        if not ms:
            continue
        rows.append(
            f"| {label} | {_fmt(_per_repeat(ms, lambda m: m.runs_per_s))} "
            f"| {_fmt(_per_repeat(ms, _p(50)), 1000)} | {_fmt(_per_repeat(ms, _p(95)), 1000)} "
            f"| {_fmt(_per_repeat(ms, lambda m: _max_or_nan(m.rss_mib)), digits=0)} "
            f"| {_fmt(_per_repeat(ms, lambda m: _max_or_nan(m.peak_rss_mib)), digits=0)} "
            f"| {_fmt(_per_repeat(ms, lambda m: _max_or_nan(m.cold_ready_s)), digits=2)} "
            f"| {_fmt(_per_repeat(ms, lambda m: m.cold_first_result_s), digits=2)} |"
        )
    return rows


def _hops(results: dict[str, list[Any]]) -> tuple[list[str], dict[str, float]]:
    hops: list[dict[str, float]] = results.get("hops", [])
    med: dict[str, float] = {}
    if not hops:
        return [], med
    rows = ["| hop | µs per message |", "|---|---|"]
    names = {
        "raw": "raw redis-py: XADD → XREADGROUP → XACK",
        "raw-same": "raw redis-py, baton's commands (XADD; XREADGROUP; FCALL started: cancel flag, hop_started, "
                    "record fields, scratchpad; FCALL commit)",
        "baton": "baton's code path (publish, RoleStreams.read, Worker.process with the echo backend)",
    }
    for key, label in names.items():
        vals = spread([h[key] for h in hops])
        med[key] = vals[1]
        rows.append(f"| {label} | {_fmt(vals, 1e6, 0)} |")
    for cfg in ("baton-echo", "celery-echo"):
        ms = results.get(cfg, [])
        if ms:
            rows.append(f"| {LABELS[cfg]}: single-run p50 / 3 hops | {_fmt(_per_repeat(ms, _p(50)), 1e6 / 3, 0)} |")
    return rows, med


def _ratios(results: dict[str, list[Any]], hop: dict[str, float]) -> list[str]:
    def rate(cfg: str) -> float:
        return _median(results.get(cfg, []), lambda m: m.runs_per_s)

    def p50(cfg: str) -> float:
        return _median(results.get(cfg, []), _p(50))

    baton = results.get("baton", [])
    loaded = baton + results.get("baton-b1", [])
    rss = _median(loaded, lambda m: _max_or_nan(m.rss_mib))
    peak = _median(loaded, lambda m: _max_or_nan(m.peak_rss_mib))
    ready = _median(results.get("cold", []), lambda m: _max_or_nan(m.cold_ready_s))
    ready3 = _median(baton, lambda m: _max_or_nan(m.cold_ready_s))
    nan = float("nan")
    checks = [
        ("batched baton runs/s ÷ seed runs/s", rate("baton") / rate("seed") if baton else nan, ">=", 6.0),
        ("batched baton runs/s ÷ Celery runs/s", rate("baton") / rate("celery") if baton else nan, ">=", 4.0),
        ("echo: baton runs/s ÷ Celery runs/s", rate("baton-echo") / rate("celery-echo"), ">=", 8.0),
        ("echo: baton p50 ÷ Celery p50", p50("baton-echo") / p50("celery-echo"), "<=", 0.2),
        ("baton hop ÷ raw redis-py with the same commands", hop.get("baton", nan) / hop.get("raw-same", nan),
         "<=", 1.25),
        ("batched baton runs/s ÷ in-process ceiling", rate("baton") / rate("ceiling") if baton else nan, ">=", 0.85),
        ("baton (batched) single-run p50 ÷ seed p50", p50("baton") / p50("seed") if baton else nan, "<=", 1.15),
        ("worker RSS after the runs, MiB (largest baton worker, median of repeats)", rss, "<=", 350.0),
        ("worker spawn→ready, s (one worker started alone, median of repeats)", ready, "<=", 4.0),
    ]
    rows = ["| target | measured (medians) | wanted | met |", "|---|---|---|---|"]
    for name, value, op, want in checks:
        ok = "–" if value != value else ("yes" if (value >= want if op == ">=" else value <= want) else "**no**")
        rows.append(f"| {name} | {value:.2f} | {op} {want:g} | {ok} |")
    uss = _median(loaded, lambda m: _max_or_nan(m.uss_mib))
    rows.append(f"| (info) worker peak RSS (VmHWM), MiB; unique (USS) MiB; spawn→ready of the slowest of 3 workers "
                f"started at once, s | {peak:.0f}; {uss:.0f}; {ready3:.2f} | | |")
    b2 = rate("baton-2x")
    if b2 == b2:
        rows.append(f"| (info) 2 workers/role runs/s ÷ seed; ÷ Celery; ÷ ceiling | {b2 / rate('seed'):.2f}; "
                    f"{b2 / rate('celery'):.2f}; {b2 / rate('ceiling'):.2f} | | |")
    rows.append(f"| (info) baton hop ÷ plain XADD→XREADGROUP→XACK | {hop.get('baton', nan) / hop.get('raw', nan):.2f}"
                " | | |")
    return rows


def _events(results: dict[str, list[Any]]) -> list[str]:
    """The token-events section: throughput with events on ÷ off, measured side by side."""
    on, off = results.get("events-on", []), results.get("events-off", [])
    if not on or not off:
        return []
    ratios = [a.runs_per_s / b.runs_per_s for a, b in zip(on, off, strict=False)]
    lo, mid, hi = spread(ratios)
    ok = "yes" if mid >= 0.9 else "**no**"
    return [
        "## Token events (issue 10)",
        "",
        "Both rows above run in the same bench run, one after the other in every repeat (same workers' code,"
        " same twin model, batched defaults): `events-on` streams `tokens` events (a chunk every 16 tokens or"
        " 50 ms per prompt, one pipelined XADD round per flush for the whole batch, from the generating thread);"
        " `events-off` does not. Both write the rest of the event log (`queued`, `hop_started`, and the"
        " hop and terminal events inside the commit).",
        "",
        "| target | measured | wanted | met |",
        "|---|---|---|---|",
        f"| batched runs/s with token events on ÷ off (median of per-repeat ratios, min–max) "
        f"| **{mid:.3f}** ({lo:.3f}–{hi:.3f}) | >= 0.9 | {ok} |",
        "",
    ]


def _served(results: dict[str, list[Any]]) -> list[str]:
    """The model-server section: HTTP workers on one batching server ÷ in-process batched workers."""
    inproc = results.get("baton", [])
    served = {cfg: results.get(cfg, []) for cfg in ("served", "served-replicas")}
    if not inproc or not any(served.values()):
        return []
    rows = [
        "## Model server (serve-model batching, torch-free workers)",
        "",
        "`served`, `served-replicas` and `baton` run in the same bench run, one after the other in every repeat,"
        " on the same cores: `served` is one `baton serve-model --replicas 1` process (the twin, one torch thread"
        " like the in-process workers, dynamic batching with its defaults) and the seed chain's three role workers with"
        " `BATON_MODEL=http://...` (each sends its batch as one prompt-list request; no torch in the workers);"
        " `served-replicas` is the same with `--replicas <cores>` (one server process per core on the port: the"
        " default where the memory holds that many copies of the model);"
        " `baton` is three workers with the model in-process (batched defaults).",
        "",
        "| target | measured | wanted | met |",
        "|---|---|---|---|",
    ]
    b_rss = _median(inproc, lambda m: _max_or_nan(m.rss_mib))
    b_cpu = _median(inproc, lambda m: m.cpu_s_per_run) * 1000
    for cfg, ms in served.items():
        if not ms:
            continue
        lo, mid, hi = spread([a.runs_per_s / b.runs_per_s for a, b in zip(ms, inproc, strict=False)])
        w_rss = _median(ms, lambda m: _max_or_nan(m.rss_mib))
        s_rss = _median(ms, lambda m: _max_or_nan(m.server_rss_mib))
        s_cpu = _median(ms, lambda m: m.cpu_s_per_run) * 1000
        rows += [
            f"| `{cfg}`: runs/s ÷ in-process batched (median of per-repeat ratios, min–max) "
            f"| **{mid:.2f}** ({lo:.2f}–{hi:.2f}) | >= 0.8 | {'yes' if mid >= 0.8 else '**no**'} |",
            f"| `{cfg}`: worker RSS with an HTTP model, MiB (largest of the three, median of repeats) "
            f"| **{w_rss:.0f}** | <= 80 | {'yes' if w_rss <= 80 else '**no**'} |",
            f"| (info) `{cfg}`: serve-model RSS (all its processes), MiB; CPU ms per run in the burst (workers +"
            f" server) vs in-process | {s_rss:.0f}; {s_cpu:.1f} vs {b_cpu:.1f} | | |",
        ]
    rows += [f"| (info) in-process worker RSS, MiB | {b_rss:.0f} | | |", ""]
    return rows


def write_report(path: Path, results: dict[str, list[Any]], info: dict[str, Any]) -> None:
    """Write the report's sections into ``path`` (``bench.sections.merge_sections``: the other sections stay)."""
    m = info["machine"]
    a = info["args"]
    hop_rows, hop_med = _hops(results)
    lb, la = info["load_before"], info["load_after"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(info["started"]))
    lines = [
        "# Benchmarks",
        "",
        "`make bench` (`.venv/bin/python -m bench`) writes this header, the sections from \"Runs\" to \"Targets\", "
        "the token-events and model-server sections and the notes of `bench/NOTES.md`, in place; each other "
        "section names the bench or the measurement that wrote it, and `make bench` keeps it.",
        "",
        f"- When: {when}, {info['duration_s'] / 60:.1f} min. Command: `{info['command']}`",
        f"- Load average (1/5/15 min) before: {lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}; after: "
        f"{la[0]:.2f} {la[1]:.2f} {la[2]:.2f}"
        + f"; 1-min load sampled between configurations: {info['load_during'][0]:.2f}–{info['load_during'][1]:.2f}"
        + " (the bench's own processes load the machine while it runs)"
        + (" — **taken under contention**: other work was running when it started" if lb[0] > 1.0 else ""),
        f"- Machine: {m['nproc']} cores, {m['cpu']}, {m['ram']} RAM, Linux {m['kernel']}",
        f"- Software: Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, redis-py "
        f"{m['redis']}, Celery {m['celery']}, msgspec {m['msgspec']}; {m['redis-server']}",
        f"- Model: the offline twin of sshleifer/tiny-gpt2, greedy, max_new_tokens=40; seed chain "
        f"(planner → researcher → summarizer), the same {len(_topics())} task texts everywhere.",
        f"- baton defaults: batch_size={info['batch_size']}, linger_ms={info['linger_ms']}, "
        f"torch_threads={info['torch_threads']}. Ceiling: the better of {info['procs']} and 3 processes, each "
        f"with its share of the runs in batches of {info['batch_size']}.",
        f"- Sizes: {a['repeats']} interleaved repeats; {a['runs']} runs per throughput burst and "
        f"{a['latency_runs']} sequential single runs with the model; {a['echo_runs']} / {a['echo_latency_runs']} "
        f"with the echo model; {a['hops']} messages per hop measurement.",
        "- Cells: **median** of the repeats (min–max). Latency = submit → result seen by the client, one run "
        "at a time. RSS = the largest worker's resident set after its runs (peak = VmHWM; Celery: main + pool child).",
        "",
        "## Runs",
        "",
        *_table(results),
        "",
        "## Broker overhead per hop",
        "",
        *hop_rows,
        "",
        "## Targets (issue 6)",
        "",
        *_ratios(results, hop_med),
        "",
        *_events(results),
        *_served(results),
    ]
    if NOTES.exists():
        lines += [NOTES.read_text().rstrip(), ""]
    merge_sections(path, "\n".join(lines))


def _topics() -> tuple[str, ...]:
    from bench.common import TOPICS

    return TOPICS
