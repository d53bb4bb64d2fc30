"""A run's vocabulary (statuses, terminal states, review decisions) is spelled once, in
``protocol/states.py``: the events, the Lua scripts and every module use it."""

from __future__ import annotations

import re
from typing import get_args

from baton.broker.scripts import library_constants, render_library
from baton.protocol import (
    DECISIONS,
    TERMINAL_EVENTS,
    TERMINAL_STATUSES,
    Event,
    ReviewDecided,
    ReviewDecision,
    ReviewStatus,
    RunStatus,
    is_terminal,
)
from baton.protocol.events import Cancelled, Done, Failed, Queued
from tests.conftest import ROOT

CODE = [p for folder in ("protocol", "broker", "agents") for p in (ROOT / folder).rglob("*.py")]


def test_terminal_events_are_the_events_tagged_with_a_terminal_status() -> None:
    assert set(TERMINAL_EVENTS) == {Done, Failed, Cancelled}
    tags = {kind.__struct_config__.tag for kind in get_args(Event)}
    assert tags >= TERMINAL_STATUSES
    assert is_terminal(Done(run_id="r")) and not is_terminal(Queued(run_id="r"))
    assert {s for s in RunStatus if s.terminal} == TERMINAL_STATUSES
    assert "done" in TERMINAL_STATUSES and "review" not in TERMINAL_STATUSES


def test_review_decisions_are_declared_once() -> None:
    assert DECISIONS == ("approve", "reject")
    for struct in (ReviewDecision, ReviewDecided):
        assert struct.__annotations__["decision"] == "Decision"
    assert ReviewStatus.after("approve") is ReviewStatus.APPROVED
    assert ReviewStatus.after("reject") is ReviewStatus.REJECTED


def test_no_module_spells_the_terminal_states_again() -> None:
    listed = re.compile(r"""["'](done|failed|cancelled)["']\s*,\s*["'](done|failed|cancelled)["']""")
    offenders = [str(p.relative_to(ROOT)) for p in CODE if listed.search(p.read_text())]
    assert offenders == []
    decisions = re.compile(r"""Literal\[\s*["']approve["']""")
    assert [str(p.relative_to(ROOT)) for p in CODE
            if decisions.search(p.read_text()) and p.name != "states.py"] == []


def test_lua_steps_take_the_vocabulary_from_the_protocol() -> None:
    assert library_constants() == {"TERMINAL_STATUSES": {s.value for s in TERMINAL_STATUSES},
                                   "DECISIONS": list(DECISIONS), "STATUS": {s.name: s.value for s in RunStatus}}
    statuses = "|".join(s.value for s in (*RunStatus, *ReviewStatus))
    compared = re.compile(rf"""[=~]=\s*['"]({statuses})['"]""")
    for script in (ROOT / "broker" / "lua").glob("*.lua"):
        code = "\n".join(line.split("--", 1)[0] for line in script.read_text().splitlines())
        assert not compared.search(code), f"{script.name} compares with a spelled status; use C or is_terminal"
    assert "C.TERMINAL_STATUSES" in render_library()
