"""``baton run`` (the seed notebook as one command) and ``baton submit``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import msgspec
import platformdirs
import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ...broker import EmbeddedRedis, Keys, Redis, RunRecord, agents_in_run, run_record, scratchpad, wait_for_runs
from ...broker.threads import ThreadBusy
from ...protocol import PRIORITIES, Budget, Cancelled, Failed, Priority, ProtocolError, RunStatus
from ..runtime.prompt import notebook_memory
from ..settings import Settings
from ..submit import submit_run
from ..workflow.spec import Workflow
from .common import (
    AppOption,
    CliError,
    app,
    app_or_named,
    connect_checked,
    err,
    out,
    settings,
    visible,
)
from .events import follow_events

__all__ = ["WorkerPool", "run", "run_budget", "submit_cmd"]



def _check_task(task: str) -> str:
    if not task.strip():
        raise CliError(
            'the task is empty: give the task text, e.g. baton run "Explain the importance of supervised learning."', 2
        )
    return task


MaxTokens = Annotated[int | None, typer.Option(help="Budget: most tokens the run's model calls may generate.")]
MaxModelCalls = Annotated[int | None, typer.Option(help="Budget: most model calls (one per prompt) of the run.")]
MaxToolCalls = Annotated[int | None, typer.Option(help="Budget: most tool calls of the run.")]


def run_budget(max_tokens: int | None, max_model_calls: int | None, max_tool_calls: int | None) -> Budget | None:
    """The budget the options give (``None``: none given; the workflow's ``[budget]`` fills the rest)."""
    try:
        given = Budget.of(max_tokens, max_model_calls, max_tool_calls)
    except msgspec.ValidationError as exc:
        option = "--" + str(exc).rsplit("`$.", 1)[-1].rstrip("`").replace("_", "-")
        raise CliError(f"bad value for {option}: {str(exc).split(' - at ')[0]}", 2) from None
    return given if given.limits() else None


def _check_priority(priority: str) -> Priority:
    for lane in PRIORITIES:
        if lane == priority:
            return lane
    raise CliError(f"bad --priority {priority!r}: expected one of {', '.join(PRIORITIES)}", 2)


PriorityOption = Annotated[str, typer.Option(help="The run's lane: interactive, or batch (served after "
                                                   "interactive work, with a fixed share).")]


class WorkerPool:
    """Worker processes spawned for one command; stopped with SIGTERM on exit."""

    def __init__(self, redis_url: str, log_path: Path, workflow: str | None = None,
                 env: dict[str, str] | None = None, app_ref: str | None = None) -> None:
        self.redis_url = redis_url
        self.workflow = workflow
        self.app_ref = app_ref
        self.env = env or {}
        self.log_path = log_path
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()

    def spawn(self, role: str, *args: str) -> None:
        """Start one ``baton worker ROLE [ARGS...]`` process (``spawn("--tools", NAME...)``: a tool worker)."""
        env = {**os.environ, **self.env, "REDIS_URL": self.redis_url}
        cmd = [sys.executable, "-m", "baton", "worker", role, *args]
        if self.workflow:
            cmd += ["--workflow", self.workflow]
        if self.app_ref:
            cmd += ["--app", self.app_ref]
        proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL)
        self.procs.append((role, proc))

    def check_alive(self) -> None:
        """Raise ``CliError`` if a worker exited on its own."""
        for role, proc in self.procs:
            if proc.poll() is not None:
                raise CliError(f"the {role} worker exited with code {proc.returncode}; see {self.log_path}")

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM every worker, wait up to ``grace`` seconds, then SIGKILL the rest."""
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log.close()


def _wait_with_progress(client: Redis, keys: Keys, wf: Workflow, run_id: str, timeout: float,
                        pool: WorkerPool | None) -> RunRecord:
    titles = {r.role: f"{r.display} ({r.agent})" for r in wf.roles}
    deadline = time.monotonic() + timeout
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        bar = progress.add_task(RunStatus.QUEUED, total=None)
        while True:
            rec = run_record(client, keys, run_id)
            if rec is not None and rec.ended:
                return rec
            role = rec.role if rec else ""
            holder = titles.get(role, role)
            progress.update(bar, description=f"baton held by {holder}" if holder else RunStatus.QUEUED)
            if pool:
                pool.check_alive()
            if time.monotonic() > deadline:
                raise CliError(f"run {run_id} did not finish within {timeout:.0f}s "
                               f"(status {rec.status if rec else 'expired'})")
            wait_for_runs(client, keys, [run_id], timeout=0.2, poll_s=0.2)


def print_seed_report(client: Redis, keys: Keys, wf: Workflow, run_id: str) -> None:
    """Print each agent's output, then each scratchpad as indented JSON, as the notebook does."""
    agents = agents_in_run(client, keys, run_id)
    specs = [r for r in wf.order() if r.agent in agents]
    pads = {r.agent: scratchpad(client, keys, run_id, r.agent) for r in specs}
    for r in specs:
        for entry in pads[r.agent]:
            print(f"{r.display} output:\n{entry.response}\n")
    for r in specs:
        print(f"{r.display} Scratchpad:\n", json.dumps(notebook_memory(pads[r.agent]), indent=2), "\n")


def _resolved_model_env(s: Settings) -> dict[str, str]:
    """Resolve the model once here (building the twin if needed, saying so in one line), so
    the workers neither race to build it nor each probe the hub."""
    from ..backends import ECHO_MODEL, is_http_model, resolve_model
    from ..runtime.logs import setup_logging

    setup_logging(level="WARNING")
    if is_http_model(s.model) or s.model == ECHO_MODEL:
        return {}
    return {"BATON_MODEL": resolve_model(s.model)}


@app.command()
def run(
    task: Annotated[str, typer.Argument(help="The task for the first role.")],
    workflow: Annotated[str | None, typer.Option(help="Workflow TOML file (default: the seed chain).")] = None,
    app_ref: AppOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the run.")] = 600.0,
    workers: Annotated[bool, typer.Option(help="Spawn one worker per role (--no-workers: use running ones).")] = True,
    max_tokens: MaxTokens = None,
    max_model_calls: MaxModelCalls = None,
    max_tool_calls: MaxToolCalls = None,
    priority: PriorityOption = "interactive",
) -> None:
    """Run TASK through the workflow and print outputs and scratchpads (the seed notebook)."""
    _check_task(task)
    lane = _check_priority(priority)
    s = settings()
    wf = app_or_named(workflow or (None if app_ref else s.workflow), app_ref)
    budget = run_budget(max_tokens, max_model_calls, max_tool_calls)
    with ExitStack() as stack:
        if os.environ.get("REDIS_URL"):
            url = s.redis_url
        else:
            cache = Path(platformdirs.user_cache_dir("baton"))
            (cache / "redis").mkdir(parents=True, exist_ok=True)
            data_dir = Path(tempfile.mkdtemp(prefix="run-", dir=cache / "redis"))
            stack.callback(shutil.rmtree, data_dir, True)
            server = stack.enter_context(EmbeddedRedis(data_dir))
            url = server.url
            s = settings(redis_url=url)
        client, keys = connect_checked(s)
        pool = None
        if workers:
            log_dir = Path(platformdirs.user_log_dir("baton"))
            log_dir.mkdir(parents=True, exist_ok=True)
            pool = WorkerPool(url, log_dir / "run-workers.log", workflow, _resolved_model_env(s), app_ref)
            stack.callback(pool.stop)
            for role in wf.roles:
                pool.spawn(role.role)
            if remote := sorted(name for name, cfg in wf.tools.items() if cfg.remote):
                pool.spawn("--tools", *remote)  # the workflow's remote tools get a tool worker
        run_id = submit_run(client, keys, s, wf, task, budget=budget, priority=lane, tenant=s.tenant)
        rec = _wait_with_progress(client, keys, wf, run_id, timeout, pool)
        print_seed_report(client, keys, wf, run_id)
        if rec.status is not RunStatus.DONE:
            raise CliError(f"run {run_id} {rec.status}: {rec.error}")


@app.command("submit")
def submit_cmd(
    task: Annotated[str, typer.Argument(help="The task for the first role.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result and print it.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600.0,
    workflow: Annotated[str | None, typer.Option(
        help="Workflow TOML file, shipped workflow or app workflow name (default: the seed chain).")] = None,
    app_ref: AppOption = None,
    deadline: Annotated[float | None, typer.Option(help="Fail the run if not done within this many seconds.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Print the run's events live until it ends.")] = False,
    max_tokens: MaxTokens = None,
    max_model_calls: MaxModelCalls = None,
    max_tool_calls: MaxToolCalls = None,
    priority: PriorityOption = "interactive",
    idempotency_key: Annotated[str | None, typer.Option(
        help="Submitting again with this key returns the run it started instead of a new one.")] = None,
    webhook: Annotated[str | None, typer.Option(
        help="POST the run's end here, signed (a URL BATON_WEBHOOK_ALLOW allows).")] = None,
    thread: Annotated[str | None, typer.Option(
        help="Make the run a turn of this thread: it sees the thread's earlier turns as history.")] = None,
    thread_policy: Annotated[str | None, typer.Option(
        "--policy", help="While the thread runs a turn: reject, enqueue, interrupt or rollback "
                         "(default: the workflow's, else enqueue).")] = None,
) -> None:
    """Submit TASK to running workers; print the run id (and the result with --wait, its events with --follow)."""
    _check_task(task)
    lane = _check_priority(priority)
    s = settings()
    budget = run_budget(max_tokens, max_model_calls, max_tool_calls)
    client, keys = connect_checked(s)
    wf = app_or_named(workflow or (None if app_ref else s.workflow), app_ref, client=client, keys=keys)
    try:
        run_id = submit_run(client, keys, s, wf, task, deadline=deadline, budget=budget, priority=lane,
                            idempotency_key=idempotency_key, webhook=webhook, tenant=s.tenant, thread=thread,
                            thread_policy=thread_policy)  # type: ignore[arg-type]  # (checked there)
    except (ProtocolError, ThreadBusy) as exc:
        raise CliError(str(exc)) from None
    out.print(run_id)
    if follow:
        last = follow_events(client, keys, run_id, follow=True)
        if isinstance(last, Failed | Cancelled):
            raise CliError(f"run {run_id} {'failed' if isinstance(last, Failed) else 'cancelled'}: "
                           f"{visible(last.reason)}")
        return
    if not wait:
        return
    done = wait_for_runs(client, keys, [run_id], timeout=timeout)
    if run_id not in done:
        raise CliError(f"run {run_id} did not finish within {timeout:.0f}s")
    rec = done[run_id]
    if rec.status is not RunStatus.DONE:
        raise CliError(f"run {run_id} {rec.status}: {visible(rec.error)}")
    print(visible(rec.result))
