"""In-process configurations, each run as its own process: ``python -m bench.inproc MODE ...``.

- ``seed``: the notebook's three ``Agent`` objects (``bench/notebook.py``), run by run
  (fresh agents per run, as baton's memory is scoped to a run); prints throughput and the
  per-run latencies as JSON.
- ``ceiling``: no broker: the same prompts through the three roles in batches of ``--batch``
  with the HF backend (one torch thread), the best the model can do in one process. The driver
  starts one such process per core and synchronises their start through ``--sync-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]


def seed(model: str, runs: int, threads: int) -> dict[str, Any]:
    """Sections 1-4 of the notebook for ``runs`` runs; returns runs/s and per-run latencies."""
    import torch
    from transformers import pipeline

    from baton.agents.backends.twin import quiet_transformers
    from bench.common import task_text
    from bench.notebook import run_notebook

    if threads > 0:
        torch.set_num_threads(threads)
    with quiet_transformers():
        agent_model = pipeline("text-generation", model=model)

    with quiet_transformers():
        run_notebook(agent_model, task_text(0))  # warm-up
        latencies = []
        t0 = time.perf_counter()
        for i in range(runs):
            t = time.perf_counter()
            run_notebook(agent_model, task_text(i))
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - t0
    return {"runs": runs, "elapsed": elapsed, "latencies": latencies, "threads": torch.get_num_threads()}


def ceiling(model: str, runs: int, offset: int, batch: int, sync_dir: str) -> dict[str, Any]:
    """The three roles over ``runs`` runs in batches of ``batch``, no broker."""
    from baton.agents.backends import load_backend
    from baton.agents.runtime.prompt import handoff_text, render_prompt
    from baton.agents.workflow.spec import SEED
    from bench.common import task_text

    backend = load_backend(model, threads=1)
    roles = SEED.order()
    backend.generate([render_prompt(roles[0], task_text(0), [])], max_new_tokens=40)  # warm-up
    sync = Path(sync_dir)
    (sync / f"ready-{os.getpid()}").touch()
    while not (sync / "go").exists():
        time.sleep(0.005)
    start, cpu = time.time(), time.process_time()
    tasks = [task_text(offset + i) for i in range(runs)]
    for spec in roles:
        outputs: list[str] = []
        for i in range(0, len(tasks), batch):
            prompts = [render_prompt(spec, t, []) for t in tasks[i : i + batch]]
            outputs += [g.text for g in backend.generate(prompts, max_new_tokens=40)]
        tasks = [handoff_text(spec, o) for o in outputs] if spec.next else outputs
    return {"runs": runs, "start": start, "end": time.time(), "cpu": time.process_time() - cpu}


def main(argv: list[str] | None = None) -> int:
    """Run one in-process mode and print its JSON result on stdout."""
    parser = argparse.ArgumentParser(prog="python -m bench.inproc")
    parser.add_argument("mode", choices=["seed", "ceiling"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--runs", type=int, default=32)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="seed: torch threads (0 = torch's default)")
    parser.add_argument("--sync-dir", default="")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.mode == "seed":
        out = seed(args.model, args.runs, args.threads)
    else:
        out = ceiling(args.model, args.runs, args.offset, args.batch, args.sync_dir)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
