"""How one model's batches of several roles are best split into calls: ``python -m bench.crosscalls``.

The seed chain's three roles have prompts of very different lengths (the planner's ~100
characters, the researcher's ~650, the summarizer's ~1,200). One in-process twin of tiny-gpt2 (one
torch thread, baton's backend) generates the three roles' prompts of ``--runs`` runs three ways, one
after the other in each repeat: **by role** (one call per role's batch of ``k`` prompts),
**one call** (the three roles' ``3k`` prompts in one call, each padded to the longest: what an
all-roles process did before ``plan_calls``), and as **``plan_calls``** splits them
(``agents/runtime/multirole.py``: a call is topped up with other roles' batches to a full batch),
for each ``k`` of ``--sizes``. Printed: the model's CPU per run (3 hops), ms. Small batches are
cheaper in one call, full ones alone. Not a test: a measurement.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from bench.common import bench_model, spread, task_text, worker_base_env

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table."""
    p = argparse.ArgumentParser(prog="python -m bench.crosscalls", description=__doc__)
    p.add_argument("--runs", type=int, default=96, help="runs per measurement (a multiple of every size)")
    p.add_argument("--sizes", default="4,12,32", help="prompts per role's batch, comma-separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=0, help="plan_calls' batch size (default: baton's)")
    args = p.parse_args(argv)
    from baton.agents.backends import load_backend
    from baton.agents.runtime.multirole import plan_calls
    from baton.agents.runtime.prompt import handoff_text, render_prompt
    from baton.agents.settings import Settings
    from baton.agents.workflow.spec import SEED

    size = args.batch_size or Settings().batch_size
    with tempfile.TemporaryDirectory(prefix="bench-crosscalls-") as tmp:
        env = worker_base_env("redis://unused", tmp)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        backend = load_backend(bench_model("twin", env), threads=1)
        prompts: list[list[str]] = []  # per role, in chain order
        tasks = [task_text(i) for i in range(args.runs)]
        for spec in SEED.order():
            prompts.append([render_prompt(spec, t, []) for t in tasks])
            outs = [g.text for i in range(0, args.runs, 32)
                    for g in backend.generate(prompts[-1][i:i + 32], max_new_tokens=40)]
            tasks = [handoff_text(spec, o) for o in outs] if spec.next else outs

        def cpu_per_run(calls: list[list[str]]) -> float:
            t = time.process_time()
            for call in calls:
                backend.generate(call, max_new_tokens=40)
            return (time.process_time() - t) / args.runs * 1000

        def ways(k: int) -> dict[str, list[list[str]]]:
            chunks = [[ps[i:i + k] for ps in prompts] for i in range(0, args.runs, k)]  # the 3 roles' batches
            return {"by role": [b for bs in chunks for b in bs],
                    "plan_calls": [[p for j in call for p in bs[j]] for bs in chunks for call in plan_calls(bs, size)],
                    "one call": [[p for b in bs for p in b] for bs in chunks]}

        print("prompt characters per role (min–max): "
              + ", ".join(f"{min(map(len, ps))}–{max(map(len, ps))}" for ps in prompts))
        print(f"load {os.getloadavg()[0]:.2f}; batch size {size}; model CPU per run (3 hops), ms, median "
              f"(min–max) of {args.repeats} repeats\n")
        print("| prompts per role's batch | by role (a call each) | `plan_calls` (baton) | one call of the three "
              "| `plan_calls` ÷ one call |")
        print("|---|---|---|---|---|")
        for k in (int(x) for x in args.sizes.split(",")):
            cpu: dict[str, list[float]] = {}
            for _ in range(args.repeats):
                for way, calls in ways(k).items():
                    cpu.setdefault(way, []).append(cpu_per_run(calls))
            cells = [f"{mid:.2f} ({lo:.2f}–{hi:.2f})" for lo, mid, hi in map(spread, cpu.values())]
            rlo, rmid, rhi = spread([a / b for a, b in zip(cpu["plan_calls"], cpu["one call"], strict=True)])
            print(f"| {k} | " + " | ".join(cells) + f" | **{rmid:.2f}** ({rlo:.2f}–{rhi:.2f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
