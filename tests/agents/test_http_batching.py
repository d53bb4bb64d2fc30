"""How the HTTP backend sends a batch (one prompt-list request, or one request per prompt),
against a real server that fails on demand."""

from __future__ import annotations

import pytest

from baton.agents.backends import ECHO_SUFFIX, ModelRejected
from baton.agents.backends.http import HTTPBackend
from tests.flaky_model import FlakyModelServer

PROMPTS = ["a", "b", "c"]
ECHOED = [p + ECHO_SUFFIX for p in PROMPTS]


def test_a_batch_is_one_list_request(flaky_model: FlakyModelServer) -> None:
    backend = HTTPBackend(flaky_model.url)
    chunks: list[tuple[int, str]] = []
    assert [g.text for g in backend.generate(PROMPTS, on_tokens=lambda i, t: chunks.append((i, t)))] == ECHOED
    assert flaky_model.completions == 1 and backend.batch == "auto"
    assert sorted(chunks) == [(i, ECHO_SUFFIX) for i in range(len(PROMPTS))]


def test_each_sends_one_request_per_prompt(flaky_model: FlakyModelServer) -> None:
    backend = HTTPBackend(f"{flaky_model.url}&batch=each")
    assert [g.text for g in backend.generate(PROMPTS)] == ECHOED
    assert flaky_model.completions == len(PROMPTS)


def test_auto_falls_back_to_one_request_per_prompt_when_lists_are_refused(flaky_model: FlakyModelServer) -> None:
    flaky_model.fail(422, reason="prompt: Input should be a valid string")
    backend = HTTPBackend(flaky_model.url)
    assert [g.text for g in backend.generate(PROMPTS)] == ECHOED
    assert backend.batch == "each"
    assert flaky_model.completions == 1 + 1 + len(PROMPTS)  # the refused list, the single probe, then each
    assert [g.text for g in backend.generate(PROMPTS)] == ECHOED
    assert flaky_model.completions == 2 + 2 * len(PROMPTS)


def test_a_refusal_of_the_prompt_itself_is_not_a_fallback(flaky_model: FlakyModelServer) -> None:
    flaky_model.fail(400, times=2, reason="prompt contains a forbidden word")
    backend = HTTPBackend(flaky_model.url)
    with pytest.raises(ModelRejected, match="forbidden word"):
        backend.generate(PROMPTS)
    assert backend.batch == "auto"


def test_list_mode_never_falls_back(flaky_model: FlakyModelServer) -> None:
    flaky_model.fail(422, reason="prompt: Input should be a valid string")
    backend = HTTPBackend(f"{flaky_model.url}&batch=list")
    with pytest.raises(ModelRejected, match="valid string"):
        backend.generate(PROMPTS)
    assert flaky_model.completions == 1 and backend.batch == "list"
