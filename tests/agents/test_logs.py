"""Worker and CLI log lines (``agents/runtime/logs.py``), in a process of their own: ``setup_logging``
configures the root logger of the process it runs in."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import logging, sys
    from baton.agents.runtime.logs import bind, context, setup_logging
    setup_logging(sys.argv[1], "INFO")
    context(role="researcher", consumer="c1")
    log = logging.getLogger("baton.test")
    log.debug("not shown")
    with bind(run_id="r1", msg_id="1-0"):
        log.info("hop %d handed to %s", 2, "summarizer")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    log.warning("no run in hand")
""")


def _lines(fmt: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, fmt], capture_output=True, text=True, timeout=60, check=True)
    return out.stderr.splitlines()


def test_text_lines_carry_the_time_level_logger_message_and_the_bound_fields() -> None:
    lines = _lines("text")
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO baton\.test: hop 2 handed to summarizer "
                        r"\[role=researcher consumer=c1 run_id=r1 msg_id=1-0\]", lines[0]), lines
    assert re.fullmatch(r"\d\d:\d\d:\d\d ERROR baton\.test: it failed \[role=researcher consumer=c1\]", lines[1])
    assert lines[2] == "Traceback (most recent call last):"
    assert "ValueError: boom" in lines
    assert lines[-1].endswith("WARNING baton.test: no run in hand [role=researcher consumer=c1]")
    assert not any("not shown" in line for line in lines)


def test_json_lines_are_one_object_each_with_the_bound_fields() -> None:
    docs = [json.loads(line) for line in _lines("json")]
    assert [d["level"] for d in docs] == ["info", "error", "warning"]
    assert docs[0]["msg"] == "hop 2 handed to summarizer" and docs[0]["run_id"] == "r1"
    assert "ValueError: boom" in docs[1]["exc"]
    assert docs[2]["role"] == "researcher" and "run_id" not in docs[2]
