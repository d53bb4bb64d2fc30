"""Streaming text out of one batched ``generate()`` call, prompt by prompt.

``transformers`` hands a streamer each decoding step's new token ids for the whole batch
(``put()``, one id per prompt), after the prompt ids themselves. :class:`BatchStreamer` keeps
each prompt's generated ids, decodes the ones not sent yet and passes the new text to
``on_tokens(index, text)`` every ``flush_tokens`` tokens or ``flush_ms`` milliseconds after the
last chunk, and once more at the end (a character split across tokens waits until it is
whole). A prompt's chunks, joined, are its continuation exactly as the backend decodes it; ids
after a prompt's end-of-sequence token (padding while the others go on) are ignored. When the
callback has a ``flush()`` method, it is called after each round of chunks (so a caller can
send one round for the whole batch at once). A failing callback is logged and never stops the
generation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from transformers.generation.streamers import BaseStreamer

__all__ = ["BatchStreamer", "OnTokens", "batch_decoder"]

log = logging.getLogger(__name__)

OnTokens = Callable[[int, str], None]
"""``on_tokens(index, text)``: a chunk of new text for the prompt at ``index`` of the batch."""

_PARTIAL = "\ufffd"  # a multi-byte character cut between tokens decodes to this until it is whole


def batch_decoder(tokenizer: Any) -> Callable[[list[list[int]]], list[str]]:
    """``decode(rows)``: each row's text with special tokens skipped, as ``tokenizer.batch_decode(rows,
    skip_special_tokens=True)``. A Rust-backed tokenizer that cleans up no spaces decodes the rows in
    one call to its backend: the same text without transformers' per-id conversion (which cost more
    than the decoding itself)."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is not None and hasattr(backend, "decode_batch") and not tokenizer.clean_up_tokenization_spaces:
        return lambda rows: list(backend.decode_batch(rows, skip_special_tokens=True))
    return lambda rows: list(tokenizer.batch_decode(rows, skip_special_tokens=True))


class BatchStreamer(BaseStreamer):  # type: ignore[misc]
    """A streamer for a batch of ``size`` prompts generated together."""

    def __init__(self, tokenizer: Any, size: int, on_tokens: OnTokens, *, eos_token_ids: Collection[int] = (),
                 flush_tokens: int = 16, flush_ms: float = 50) -> None:
        self.tokenizer = tokenizer
        self._decode = batch_decoder(tokenizer)
        self.on_tokens = on_tokens
        self.eos = frozenset(eos_token_ids)
        self.flush_tokens = max(1, flush_tokens)
        self.flush_s = max(0.0, flush_ms) / 1000
        self.ids: list[list[int]] = [[] for _ in range(size)]
        self.unsent = [0] * size
        self.finished = [False] * size
        self.last_flush = time.monotonic()
        self._prompt_seen = False
        self._failed = False
        self._round = False

    def put(self, value: Any) -> None:
        """Take one decoding step's ids (the first call brings the prompts' ids: skipped)."""
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        step = value.reshape(len(self.ids), -1).tolist()
        eos, ids, unsent, finished = self.eos, self.ids, self.unsent, self.finished
        for row, tokens in enumerate(step):
            if finished[row]:
                continue
            for token in tokens:
                ids[row].append(token)
                unsent[row] += 1
                if token in eos:
                    finished[row] = True
                    break
        due = time.monotonic() - self.last_flush >= self.flush_s
        self._flush([row for row in range(len(ids))
                     if unsent[row] and (due or finished[row] or unsent[row] >= self.flush_tokens)])
        self._end_round()

    def end(self) -> None:
        """Send every prompt's remaining text."""
        self._flush([row for row in range(len(self.ids)) if self.unsent[row]], final=True)
        self._end_round()

    def _flush(self, rows: list[int], *, final: bool = False) -> None:
        """Decode the unsent ids of ``rows`` (one call) and pass each row's chunk on; a chunk ending
        in a cut character waits for the next tokens unless the row is done."""
        if not rows:
            return
        ids, unsent = self.ids, self.unsent
        chunks = self._decode([ids[row][len(ids[row]) - unsent[row]:] for row in rows])
        for row, chunk in zip(rows, chunks, strict=True):
            if not (final or self.finished[row]) and chunk.endswith(_PARTIAL):
                continue
            unsent[row] = 0
            if chunk:
                self._round = True
                self._call(self.on_tokens, row, chunk)

    def _end_round(self) -> None:
        if not self._round:
            return
        self._round = False
        self.last_flush = time.monotonic()  # the time limit counts from the last chunk sent
        flush = getattr(self.on_tokens, "flush", None)
        if flush is not None:
            self._call(flush)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - streaming is best effort: the generation goes on
            if not self._failed:
                log.warning("token callback failed; generation goes on", exc_info=True)
            self._failed = True
