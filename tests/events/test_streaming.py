"""Token streaming from batched generation: chunks while generating, outputs unchanged."""

from __future__ import annotations

from pathlib import Path

from baton.agents.backends import ECHO_SUFFIX, EchoBackend, load_backend

PROMPTS = [
    "Planner agent named Alice. Task: Explain the importance of supervised learning.",
    "Hi",
    "A much longer prompt that keeps going for a while so that the batch needs left padding " * 2,
    "é ü 漢字 emoji 🎉 bytes",
]


def test_streaming_on_or_off_the_batched_outputs_are_the_same(twin: Path) -> None:
    backend = load_backend(str(twin), flush_tokens=3, flush_ms=10_000)
    plain = backend.generate(PROMPTS, max_new_tokens=24)
    chunks: dict[int, list[str]] = {i: [] for i in range(len(PROMPTS))}
    rounds: list[int] = []

    class Collect:
        def __call__(self, index: int, text: str) -> None:
            chunks[index].append(text)

        def flush(self) -> None:
            rounds.append(sum(map(len, chunks.values())))

    streamed = backend.generate(PROMPTS, max_new_tokens=24, on_tokens=Collect())
    assert streamed == plain
    for i, (prompt, gen) in enumerate(zip(PROMPTS, plain, strict=True)):
        assert "".join(chunks[i]) == gen.text[len(prompt):]
        assert 2 <= len(chunks[i]) <= gen.new_tokens // 3 + 1  # every 3 tokens, not one call per token
    assert rounds == sorted(rounds) and len(rounds) >= 2  # one flush per round of chunks, batch-wide


def test_a_failing_callback_never_fails_the_generation(twin: Path) -> None:
    backend = load_backend(str(twin))

    def boom(index: int, text: str) -> None:
        raise RuntimeError("streaming broke")

    assert backend.generate(PROMPTS[:2], max_new_tokens=8, on_tokens=boom) == backend.generate(
        PROMPTS[:2], max_new_tokens=8)


def test_echo_sends_its_suffix_as_one_chunk() -> None:
    got: list[tuple[int, str]] = []
    EchoBackend(env={}).generate(["a", "b"], on_tokens=lambda i, t: got.append((i, t)))
    assert got == [(0, ECHO_SUFFIX), (1, ECHO_SUFFIX)]
