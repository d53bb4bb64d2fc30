"""The backend's own greedy loop (``backends/greedy.py``) gives exactly what ``generate()`` gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from baton.agents.backends import HFPipelineBackend
from baton.agents.backends.greedy import greedy_decode, plain_greedy

PROMPTS = [
    "Hello",
    "Planner agent named Alice. Task: Explain the importance of supervised learning.\nMemory: []\nResponse:",
    "The quick brown fox jumps over the lazy dog. " * 6,
    "a b",
    "Summarize key points: " + "research output text, " * 25,
    "Ünïcödé 🤖 and <|endoftext|> inside",
    "",
]


@pytest.fixture(scope="module")
def backend(twin: Path) -> HFPipelineBackend:
    return HFPipelineBackend(str(twin), threads=1)


def _via_generate(backend: HFPipelineBackend, prompts: list[str], max_new: int, **extra: Any) -> list[list[int]]:
    enc = backend.encode(prompts, max_new_tokens=max_new)
    with torch.inference_mode():
        out = backend.model.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                                     max_new_tokens=max_new, do_sample=False, pad_token_id=backend.pad_token_id,
                                     **extra)
    rows: list[list[int]] = out[:, enc.input_ids.shape[1]:].tolist()
    return rows


def _via_loop(backend: HFPipelineBackend, prompts: list[str], max_new: int, eos: frozenset[int],
              streamer: Any = None) -> list[list[int]]:
    enc = backend.encode(prompts, max_new_tokens=max_new)
    return greedy_decode(backend.model, enc.input_ids, enc.attention_mask, max_new_tokens=max_new,
                         pad_token_id=backend.pad_token_id, eos_token_ids=eos, streamer=streamer)


def test_the_twin_takes_the_fast_loop(backend: HFPipelineBackend) -> None:
    assert plain_greedy(backend.model) and backend.fast_greedy


@pytest.mark.parametrize("prompts", [PROMPTS, PROMPTS[1:2], PROMPTS[2:5]], ids=["padded", "alone", "no-empty"])
def test_same_tokens_as_generate(backend: HFPipelineBackend, prompts: list[str]) -> None:
    assert _via_loop(backend, prompts, 40, backend.eos_token_ids) == _via_generate(backend, prompts, 40)


def test_backend_texts_equal_generate_path(backend: HFPipelineBackend) -> None:
    fast = backend.generate(PROMPTS, max_new_tokens=40)
    backend.fast_greedy = False
    try:
        slow = backend.generate(PROMPTS, max_new_tokens=40)
    finally:
        backend.fast_greedy = True
    assert fast == slow


def test_end_of_sequence_pads_and_stops_like_generate(backend: HFPipelineBackend) -> None:
    """Tokens the twin does produce, taken as end-of-sequence: some rows end at once and are
    padded while the others go on; when every row has ended, the loop stops, as generate() does."""
    produced = sorted({row[0] for row in _via_generate(backend, PROMPTS, 12)})
    assert len(produced) > 1  # the twin answers these prompts with different tokens
    for eos in ([produced[0]], [produced[-1]], produced):
        ours = _via_loop(backend, PROMPTS, 12, frozenset(eos))
        assert ours == _via_generate(backend, PROMPTS, 12, eos_token_id=eos)
    assert len(ours[0]) == 1  # all ended at the first step


def test_streamer_sees_the_same_steps(backend: HFPipelineBackend) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.puts: list[list[int]] = []
            self.ended = 0

        def put(self, value: torch.Tensor) -> None:
            self.puts.append(value.reshape(-1).tolist())

        def end(self) -> None:
            self.ended += 1

    ours, theirs = Recorder(), Recorder()
    _via_loop(backend, PROMPTS[:3], 10, backend.eos_token_ids, streamer=ours)
    _via_generate(backend, PROMPTS[:3], 10, streamer=theirs)
    assert ours.puts == theirs.puts and ours.ended == theirs.ended == 1


def test_a_config_with_a_logits_processor_goes_through_generate(backend: HFPipelineBackend) -> None:
    config = backend.model.generation_config
    saved = config.repetition_penalty
    config.repetition_penalty = 1.3
    try:
        assert not plain_greedy(backend.model)
    finally:
        config.repetition_penalty = saved
    assert plain_greedy(backend.model)
