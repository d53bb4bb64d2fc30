"""Token streaming for one batched model call: chunks in, ``tokens`` events out.

The backend calls a :class:`TokenStream` as ``on_tokens(index, text)`` with each prompt's new
text, and (the Hugging Face streamer does) ``flush()`` after each round of chunks. A round goes
to a writer thread, which writes it as ``tokens`` events in one pipelined round trip for all
runs of the batch; the generation never waits for Redis. ``close()`` writes what is left and
waits for the writer, so a hop's chunks are in its log before its ``hop_finished``. Best effort:
a failed write is logged (``EventWriter``) and the hop goes on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from baton.agents.runtime.events import EventWriter
from baton.protocol import Task, Tokens

__all__ = ["TokenStream"]

_Round = list[tuple[int, str]]


class TokenStream:
    """Collects the chunks of one batch's prompts (``tasks[index]``) and writes them as events."""

    def __init__(self, writer: EventWriter, tasks: Sequence[Task], role: str, agent: str) -> None:
        self.writer = writer
        self.tasks = list(tasks)
        self.role = role
        self.agent = agent
        self.sent = [0] * len(self.tasks)
        self._lock = threading.Lock()
        self._round: _Round = []
        self._rounds: queue.SimpleQueue[_Round | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_rounds, name="token-events", daemon=True)
        self._thread.start()

    def __call__(self, index: int, text: str) -> None:
        """A chunk of new text for ``tasks[index]`` (any thread)."""
        if text and 0 <= index < len(self.tasks):
            with self._lock:
                self._round.append((index, text))

    def flush(self) -> None:
        """Hand the chunks collected so far to the writer thread."""
        with self._lock:
            chunks, self._round = self._round, []
        if chunks:
            self._rounds.put(chunks)

    def close(self) -> None:
        """Write what is left and wait until every chunk was written (or failed)."""
        self.flush()
        self._rounds.put(None)
        self._thread.join()

    def _write_rounds(self) -> None:
        while (chunks := self._rounds.get()) is not None:
            while True:  # several rounds waiting: one round trip for all of them
                try:
                    more = self._rounds.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._rounds.put(None)
                    break
                chunks += more
            self.writer.emit([self._event(index, text) for index, text in chunks])

    def _event(self, index: int, text: str) -> Tokens:
        task = self.tasks[index]
        number, self.sent[index] = self.sent[index], self.sent[index] + 1
        return Tokens(run_id=task.run_id, role=self.role, agent=self.agent, hop=task.hop, msg_id=task.id,
                      text=text, index=number)
