"""``baton result`` and ``baton events`` print a model's or a task's text with its control characters made
visible: escape sequences, bells and bidi overrides never reach the terminal raw."""

from __future__ import annotations

import time

import redis

from baton.broker import Keys, submit
from baton.broker.events import append_events
from baton.protocol import Task
from baton.protocol.events import Done, Tokens
from tests.cli import baton

HOSTILE = "clear\x1b[2J\x1b]0;pwned\x07 bell\x07 csi\x9b31m rtl\u202etxt.exe"


def test_result_and_events_show_control_characters_as_escapes(
    client: redis.Redis, keys: Keys, worker_env: dict[str, str]
) -> None:
    run_id = submit(client, keys, Task(run_id="hostile", role="planner", task="t"))
    client.hset(keys.run(run_id), mapping={"status": "done", "result": HOSTILE})
    now = time.time()
    append_events(client, keys, run_id, [
        Tokens(run_id=run_id, role="summarizer", agent="Eve", hop=2, at=now, msg_id="m1", text=HOSTILE),
        Done(run_id=run_id, role="summarizer", agent="Eve", hop=2, at=now, output=HOSTILE),
    ])
    shown = "clear\\x1b[2J\\x1b]0;pwned\\x07 bell\\x07 csi\\x9b31m rtl\\u202etxt.exe"
    for args in (("result", run_id), ("events", run_id)):
        done = baton(*args, env=worker_env)
        assert done.returncode == 0, done.stderr
        assert shown in done.stdout, (args, done.stdout)
        raw = {c for c in done.stdout if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0 or c == "\u202e"}
        assert raw == set(), (args, raw)
