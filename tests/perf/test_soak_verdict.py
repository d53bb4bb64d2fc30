"""The soak's verdict rule (``bench.soak_report.judge``) on made-up samples: growth, p99 and lost runs."""

from __future__ import annotations

from typing import Any

from bench.soak_report import WATCHED, judge


def _soak(grow: str | None = None, *, p99_late: float = 1.0, lost: int = 0) -> dict[str, Any]:
    samples = []
    for i in range(180):  # 30 minutes of 10 s samples
        s: dict[str, Any] = {name: 1000.0 for name in WATCHED}
        if grow:
            s[grow] *= 1 + 0.1 * i / 179  # +10% over the run
        samples.append({**s, "t": 10.0 * (i + 1), "loadavg": 1.0, "cpu_share": 0.3})
    latencies = [[t, 1.0 if t < 1500 else p99_late] for t in range(0, 1800, 2)]
    return {"samples": samples, "latencies": latencies, "lost": lost}


def test_flat_series_on_time_nothing_lost_pass() -> None:
    v = judge(_soak())
    assert v["ok"] and v["p99_ok"] and all(g["growth"] == 0 for g in v["growth"].values())
    assert 1190 <= v["window_s"] <= 1200  # the last 20 minutes


def test_each_growing_series_fails() -> None:
    for name in WATCHED:
        v = judge(_soak(name))
        assert not v["ok"] and not v["growth"][name]["ok"], name
        assert [n for n, g in v["growth"].items() if not g["ok"]] == [name]


def test_p99_more_than_doubled_fails() -> None:
    assert judge(_soak(p99_late=1.9))["p99_ok"]
    v = judge(_soak(p99_late=2.5))
    assert not v["p99_ok"] and not v["ok"]


def test_a_lost_run_fails() -> None:
    assert not judge(_soak(lost=1))["ok"]
