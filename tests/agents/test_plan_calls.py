"""How an all-roles process splits one model's batches into calls (``plan_calls``)."""

from __future__ import annotations

from baton.agents.runtime.multirole import plan_calls

SHORT, MID, LONG = "p" * 100, "r" * 650, "s" * 1200  # the seed chain's planner, researcher, summarizer prompts


def test_small_batches_of_several_roles_share_one_call() -> None:
    assert plan_calls([[LONG] * 3, [SHORT] * 4, [MID] * 2], size=32) == [[1, 2, 0]]


def test_full_batches_each_get_their_own_call_shortest_prompts_first() -> None:
    batches = [[LONG] * 32, [MID] * 32, [SHORT] * 32]
    assert plan_calls(batches, size=32) == [[2], [1], [0]]


def test_a_call_is_topped_up_to_a_full_batch_with_whole_batches() -> None:
    assert plan_calls([[SHORT] * 20, [MID] * 20, [LONG] * 20], size=32) == [[0, 1], [2]]
    assert plan_calls([[LONG] * 5, [MID] * 12, [SHORT] * 20], size=32) == [[2, 1], [0]]
    assert plan_calls([[SHORT] * 16, [MID] * 16, [LONG] * 16], size=32) == [[0, 1], [2]]
    assert plan_calls([[SHORT] * 40], size=32) == [[0]]  # a batch is never split
    assert plan_calls([], size=32) == []
