"""Split rules and route choice on text (pure functions)."""

from __future__ import annotations

import pytest

from baton.agents.runtime.routing import choose_target, continuation, needs_routing, split_text
from baton.agents.workflow.spec import SEED, RoleSpec, Route, Split
from baton.protocol import Task

TINY = " Conversion Conversion Conversion Conversion Conversion Conversion Conversion"


def test_numbered_and_bulleted_lines() -> None:
    text = "Plan:\n1. Labels\n2) Generalization\n- Evaluation\n3. Extra\n"
    assert split_text(Split(by="lines", count=3), text) == ["Labels", "Generalization", "Evaluation"]


def test_sentences() -> None:
    text = "Labels cost money. Models generalize! Do they? Trailing"
    assert split_text(Split(by="sentences", count=2), text) == ["Labels cost money.", "Models generalize!"]


@pytest.mark.parametrize("by", ["lines", "sentences"])
def test_unstructured_text_falls_back(by: str) -> None:
    chunks = split_text(Split(by=by, count=3, fallback="chunks"), TINY)
    assert chunks == ["Conversion Conversion Conversion", "Conversion Conversion", "Conversion Conversion"]
    assert split_text(Split(by=by, count=3, fallback="copies"), TINY) == [TINY.strip()] * 3


def test_chunks_of_short_or_empty_text_still_give_count_parts() -> None:
    assert split_text(Split(by="chunks", count=3), "one two") == ["one", "two", "one two"]
    assert split_text(Split(by="chunks", count=2), "") == ["", ""]


def test_routes_first_match_else_next() -> None:
    spec = RoleSpec(role="a", agent="A", next="b", routes=[
        Route(when=r"^\[calculator\] 4$", source="tools", to="c"), Route(when="stop", to="end")])
    assert choose_target(spec, {"tools": "[calculator] 4", "output": ""}) == "c"
    assert choose_target(spec, {"tools": "[calculator] 5", "output": "please stop"}) == ""
    assert choose_target(spec, {"tools": "", "output": "go on"}) == "b"


def test_seed_needs_no_routing_and_continuation() -> None:
    task = Task(run_id="r", role="planner", task="t")
    assert not any(needs_routing(r, task) for r in SEED.roles)
    assert needs_routing(SEED.roles[0], Task(run_id="r", role="planner", task="t", parts=3, group="g"))
    assert continuation("Prompt:", "Prompt: more") == " more" and continuation("P", "other") == "other"
