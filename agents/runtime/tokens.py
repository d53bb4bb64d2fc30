"""Token streaming for one batched model call: chunks in, ``tokens`` events out.

The backend calls a :class:`TokenStream` as ``on_tokens(index, text)`` with each prompt's new
text, and (the Hugging Face streamer does) ``flush()`` after each round of chunks: a round is
written as ``tokens`` events in one pipelined round trip for all runs of the batch, so a
generation of ``n`` tokens costs about ``n / BATON_TOKEN_FLUSH_TOKENS`` round trips, whatever the
batch size. (Written from the generating thread: a writer thread cost more than it saved on
small machines, where GIL and scheduler hand-offs outweigh a local round trip.) ``close()``
stages what is left (``EventWriter.stage``): it rides in the hop's commit, before its
``hop_finished``, rather than costing a round trip of its own. Best effort:
a failed write is logged (``EventWriter``) and the hop goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ...protocol import Task, Tokens
from .events import EventWriter

__all__ = ["TokenStream"]


class TokenStream:
    """Collects the chunks of one batch's prompts (``tasks[index]``) and writes them as events."""

    def __init__(self, writer: EventWriter, tasks: Sequence[Task], role: str, agent: str) -> None:
        self.writer = writer
        self.tasks = list(tasks)
        self.role = role
        self.agent = agent
        self.sent = [0] * len(self.tasks)
        self._lock = threading.Lock()
        self._round: list[tuple[int, str]] = []

    def __call__(self, index: int, text: str) -> None:
        """A chunk of new text for ``tasks[index]`` (any thread)."""
        if text and 0 <= index < len(self.tasks):
            with self._lock:
                self._round.append((index, text))

    def flush(self) -> None:
        """Write the chunks collected so far (one round trip)."""
        with self._lock:
            chunks, self._round = self._round, []
        if chunks:
            self.writer.emit([self._event(index, text) for index, text in chunks])

    def close(self) -> None:
        """Stage what is left for the writer's next write (the hop's commit takes it)."""
        with self._lock:
            chunks, self._round = self._round, []
        if chunks:
            self.writer.stage([self._event(index, text) for index, text in chunks])

    def _event(self, index: int, text: str) -> Tokens:
        task = self.tasks[index]
        number, self.sent[index] = self.sent[index], self.sent[index] + 1
        return Tokens(run_id=task.run_id, role=self.role, agent=self.agent, hop=task.hop, msg_id=task.id,
                      text=text, index=number)
