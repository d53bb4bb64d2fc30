"""Code roles end to end: worker processes of apps, a real Redis, the twin or an HTTP model."""

from __future__ import annotations

import redis

from baton import Client
from baton.broker import Keys, scratchpad
from tests.conftest import Workers
from tests.scripted_model import ScriptedModel

TASK = "Explain the importance of supervised learning."


def test_notebook_app_outputs_equal_the_toml_seed(workers: Workers, client: redis.Redis, keys: Keys,
                                                   redis_url: str) -> None:
    workers.spawn("--all-roles")
    workers.spawn("--app", "examples.notebook_app:app", "--all-roles")
    workers.wait_ready(client, 6, timeout=240)  # an all-roles process beats once per role
    with Client(redis_url) as c:
        seed, app = c.submit(TASK), c.submit(TASK, workflow="notebook")
        assert app.wait(timeout=240) == seed.wait(timeout=240)
    for agent in ("Alice", "Bob", "Eve"):
        mine, theirs = scratchpad(client, keys, app.id, agent), scratchpad(client, keys, seed.id, agent)
        assert [(e.task, e.response) for e in mine] == [(e.task, e.response) for e in theirs]
    # the app's hops ran as code (each journaled its model call), the seed's as templates
    assert sorted(client.hkeys(keys.journal_hops(app.id))) == [b"planner:0:0", b"researcher:1:0", b"summarizer:2:0"]
    assert not client.exists(keys.journal_hops(seed.id))


def test_the_readme_support_app_runs_as_written(workers: Workers, client: redis.Redis, keys: Keys,
                                                 redis_url: str) -> None:
    from baton.broker import read_events
    from baton.protocol import Custom
    from tests.scripted_model import call, calls, say

    scripts = {"triage": [calls(call("orders.lookup_order", order=42), call("refund_policy", days_since_purchase=12)),
                          say("Findings: {tool_results}")],
               "answer": [say("Dear customer. {last_user}")]}
    with ScriptedModel(scripts) as model:
        for role in ("triage", "answer"):
            workers.spawn("--app", "examples.support_app:app", role, env={"BATON_MODEL": model.url(role)})
        workers.wait_ready(client, 2, timeout=240)
        with Client(redis_url) as c:
            run = c.submit("Where is order 42? I want a refund, I bought it 12 days ago.", workflow="support")
            result = run.wait(timeout=240)
        assert result.startswith("Dear customer. Write the customer a short answer.\nRequest: Where is order 42?")
        assert result.endswith("Findings: order 42: shipped on Monday; refundable")  # an MCP tool and a Python one
        offered = sorted(t["function"]["name"] for t in model.requests[0]["tools"])
        assert offered == ["escalate", "orders__lookup_order", "refund_policy"]
    assert client.hget(keys.memory(run.id), "triage") == b"Findings: order 42: shipped on Monday; refundable"
    assert [e.data for _, e in read_events(client, keys, run.id) if isinstance(e, Custom)] == [{"tool_calls": 2}]
