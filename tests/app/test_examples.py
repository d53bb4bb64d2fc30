"""The example apps: the notebook chain as code renders the seed's prompts and handoffs; runners."""

from __future__ import annotations

import asyncio

import redis

from baton import Retry
from baton.agents.app import AppRunner, load_app
from baton.agents.runtime.prompt import handoff_text, render_prompt
from baton.agents.settings import Settings
from baton.agents.workflow import SEED
from baton.broker import Keys
from baton.protocol import Task
from tests.app.gateway import EchoGateway, item


def test_notebook_app_is_the_seed_chain_as_code() -> None:
    wf = load_app("examples.notebook_app:app").workflow()
    fields = ("role", "agent", "display", "prompt", "next", "handoff", "memory", "memory_window", "max_new_tokens")
    for mine, seed in zip(wf.order(), SEED.order(), strict=True):
        assert mine.is_code and not seed.is_code
        assert [getattr(mine, f) for f in fields] == [getattr(seed, f) for f in fields]


def test_notebook_app_chain_through_contexts_equals_the_template_chain(redis_url: str, client: redis.Redis,
                                                                      keys: Keys) -> None:
    wf = load_app("examples.notebook_app:app").workflow()
    runner = AppRunner.for_settings(Settings(redis_url=redis_url))
    gw = EchoGateway()
    code_task = template_task = "Explain the importance of supervised learning."
    for hop, (mine, seed) in enumerate(zip(wf.order(), SEED.order(), strict=True)):
        task = Task(role=mine.role, task=code_task, run_id="nb-run", hop=hop)
        outcome = asyncio.run(runner.run(gw, item(task), mine))
        template_out = gw.backend.generate([render_prompt(seed, template_task, [])], max_new_tokens=40)[0].text
        assert outcome.text == template_out  # type: ignore[union-attr]
        code_task, template_task = handoff_text(mine, outcome.text), handoff_text(seed, template_out)  # type: ignore[union-attr]
        assert code_task == template_task


def test_runner_classifies_with_the_apps_retryable_types(redis_url: str) -> None:
    runner = AppRunner.for_settings(Settings(redis_url=redis_url), retryable=(ConnectionResetError,))
    assert runner.is_transient(Retry()) and runner.is_transient(ConnectionResetError())
    assert not runner.is_transient(ValueError("bad"))
    assert runner.failure_reason(ValueError("bad"), "triage") == "handler of role 'triage' raised ValueError: bad"


def test_the_readme_shows_the_support_app_as_the_example_file_has_it() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    section = readme.split("## Write your own agents", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code == (root / "examples" / "support_app.py").read_text()
    assert readme.index("## Write your own agents") < readme.index("## Run it with Docker Compose")
