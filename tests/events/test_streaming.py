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


def test_a_character_cut_between_tokens_waits_and_rows_decode_as_the_tokenizer_does(twin: Path) -> None:
    """Fed ids directly: a multi-byte character split over tokens is sent whole, each row's chunks
    join to ``tokenizer.decode`` of its ids, and the one-call decoder matches ``batch_decode``."""
    import torch

    from baton.agents.backends.streaming import BatchStreamer, batch_decoder

    backend = load_backend(str(twin))
    tok = backend.tokenizer  # type: ignore[attr-defined]
    texts = ["é ü 漢字 🎉🤖 done", "plain words here and more", "<|endoftext|> special 漢"]
    rows = [tok(t)["input_ids"] for t in texts]
    assert any(tok.decode(r[:i]).endswith("\ufffd") for r in rows for i in range(1, len(r)))  # a cut exists
    assert batch_decoder(tok)(rows) == tok.batch_decode(rows, skip_special_tokens=True)
    width = max(map(len, rows))
    padded = [r + [tok.eos_token_id] * (width - len(r)) for r in rows]
    chunks: dict[int, list[str]] = {i: [] for i in range(len(rows))}
    streamer = BatchStreamer(tok, len(rows), lambda i, t: chunks[i].append(t), flush_tokens=1, flush_ms=10_000)
    streamer.put(torch.zeros((len(rows), 1), dtype=torch.long))  # the prompts' ids: skipped
    for step in range(width):
        streamer.put(torch.tensor([p[step] for p in padded]))
    streamer.end()
    for i, ids in enumerate(padded):
        assert "".join(chunks[i]) == tok.decode(ids, skip_special_tokens=True)
        assert not any(c.endswith("\ufffd") for c in chunks[i])
