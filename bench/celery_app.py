"""The Celery peer: the seed chain as three Celery tasks, one queue (and worker) per role.

Each task does what a baton worker does for one message: read the agent's scratchpad for the
run from Redis, render the same prompt (``baton.agents.runtime.prompt.render_prompt``), make the same model
call (``load_backend(BATON_MODEL).generate([prompt])``), write the scratchpad entry, and return
the handoff text. Broker and result backend are the Redis at ``BENCH_CELERY_URL``. Settings are
Celery's defaults but for JSON only and a quiet worker; the driver starts the workers with
``--pool prefork --concurrency 1``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery, signals

from baton.agents.runtime.prompt import handoff_text, render_prompt
from baton.agents.workflow.spec import SEED
from baton.broker.pads import PadEntry, PadMeta, decode_pad, encode_pad

__all__ = ["QUEUES", "app", "planner", "researcher", "run_chain", "summarizer"]

URL = os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6399/0")
QUEUES = {spec.role: f"bench-{spec.role}" for spec in SEED.roles}

app = Celery("bench", broker=URL, backend=URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_routes={f"bench.{role}": {"queue": queue} for role, queue in QUEUES.items()},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    result_expires=3600,
)

_state: dict[str, Any] = {}


def _backend() -> Any:
    if "backend" not in _state:
        from baton.agents.backends import DEFAULT_MODEL, load_backend

        _state["backend"] = load_backend(os.environ.get("BATON_MODEL", DEFAULT_MODEL), threads=1)
        _state["redis"] = redis.Redis.from_url(URL)
    return _state["backend"]


@signals.worker_process_init.connect
def _load(**_: Any) -> None:
    """Load the model in each pool process before it takes work."""
    _backend()


def _step(role: str, task: str, run_id: str) -> str:
    spec = SEED.role(role)
    backend = _backend()
    client: redis.Redis = _state["redis"]
    key = f"celerybench:pad:{run_id}:{spec.agent}"
    memory = [decode_pad(v) for _, v in sorted(client.hgetall(key).items())]
    prompt = render_prompt(spec, task, memory)
    output: str = backend.generate([prompt], max_new_tokens=40)[0].text
    entry = PadEntry(task=task, response=output, meta=PadMeta(finished=time.time()))
    client.hset(key, str(len(memory)), encode_pad(entry))
    return handoff_text(spec, output) if spec.next else output


@app.task(name="bench.planner")
def planner(task: str, run_id: str) -> str:
    """The planner step."""
    return _step("planner", task, run_id)


@app.task(name="bench.researcher")
def researcher(task: str, run_id: str) -> str:
    """The researcher step; ``task`` is the planner's handoff text."""
    return _step("researcher", task, run_id)


@app.task(name="bench.summarizer")
def summarizer(task: str, run_id: str) -> str:
    """The summarizer step: the run's result."""
    return _step("summarizer", task, run_id)


def run_chain(task: str, run_id: str) -> Any:
    """Start one run as a Celery chain; returns the chain's AsyncResult (the last step's)."""
    from celery import chain

    return chain(planner.s(task, run_id), researcher.s(run_id), summarizer.s(run_id)).apply_async()
