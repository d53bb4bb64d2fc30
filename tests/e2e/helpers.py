"""Helpers for end-to-end tests: the seed notebook (from ``bench/notebook.py``), waiting on runs."""

from __future__ import annotations

from pathlib import Path

import redis

from baton.broker import Keys, get_run
from bench.notebook import SEED_TASK, run_notebook
from tests.waiting import wait_for

__all__ = ["SEED_TASK", "all_done", "notebook", "wait_runs"]


def notebook(model_path: Path, initial_task: str = SEED_TASK) -> dict[str, list[dict[str, str]]]:
    """Sections 1-5 of the seed notebook (``bench/notebook.py``) on the model at ``model_path``; returns memories."""
    from transformers import pipeline

    return run_notebook(pipeline("text-generation", model=str(model_path)), initial_task)


def wait_runs(client: redis.Redis, keys: Keys, run_ids: list[str], timeout: float = 90,
              final: tuple[str, ...] = ("done", "failed", "cancelled")) -> dict[str, dict[str, str]]:
    """Poll run records until all are final; fail with the statuses seen on timeout."""
    seen: dict[str, dict[str, str]] = {}

    def all_final() -> dict[str, dict[str, str]] | None:
        seen.update({r: get_run(client, keys, r) or {} for r in run_ids})
        return dict(seen) if all(rec.get("status") in final for rec in seen.values()) else None

    return wait_for(all_final, timeout, "runs to finish",
                    logs=lambda: str({r: rec.get("status") for r, rec in seen.items()}))


def all_done(client: redis.Redis, keys: Keys, run_ids: list[str]) -> bool:
    """Whether every run of ``run_ids`` is ``done`` (one pipelined round trip: for polling many runs)."""
    pipe = client.pipeline(transaction=False)
    for run_id in run_ids:
        pipe.hget(keys.run(run_id), "status")
    return all(s == b"done" for s in pipe.execute())
