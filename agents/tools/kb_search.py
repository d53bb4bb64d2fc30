"""``kb_search``: BM25 search over a folder of local text files (``.txt`` and ``.md``).

The folder is the tool option ``dir`` (relative to the workflow file), never an argument: a
model's output must not choose which files are read. Each paragraph (blank-line separated) is a document; results
are the best ``k`` paragraphs as ``file: text`` lines. The index is rebuilt when a file changes.
The tool option ``mode = "semantic"`` ranks by sentence embeddings instead (optional package,
see ``baton.agents.tools.semantic``).
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .base import ToolContext, ToolError
from .semantic import SemanticRanker

__all__ = ["BM25", "KbSearch", "tokenize"]

_WORD = re.compile(r"[a-z0-9]+")
_MAX_CHARS = 400


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens."""
    return _WORD.findall(text.lower())


class BM25:
    """Okapi BM25 over tokenized documents (k1 = 1.5, b = 0.75)."""

    def __init__(self, docs: list[list[str]], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.tf = [Counter(d) for d in docs]
        self.lengths = [len(d) for d in docs]
        self.avg = sum(self.lengths) / len(docs) if docs else 0.0
        df: Counter[str] = Counter(t for d in docs for t in set(d))
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: list[str]) -> list[float]:
        """The score of every document for ``query``."""
        out = []
        for tf, length in zip(self.tf, self.lengths, strict=True):
            s = 0.0
            for t in query:
                f = tf.get(t, 0)
                if f:
                    s += self.idf[t] * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * length / self.avg))
            out.append(s)
        return out


@dataclass(frozen=True, slots=True)
class _Index:
    stamp: tuple[tuple[str, float], ...]
    docs: list[tuple[str, str]]
    bm25: BM25


class KbSearch:
    """Search local text files: ``{"query": "gradient descent", "k": "3"}``."""

    name = "kb_search"
    description = "BM25 search over the knowledge-base folder; args: query, k (default 3)"

    def __init__(self) -> None:
        self._indexes: dict[Path, _Index] = {}
        self._semantic = SemanticRanker()
        self._lock = threading.Lock()

    def _index(self, folder: Path) -> _Index:
        if not folder.is_dir():
            raise ToolError(f"knowledge-base folder {folder} does not exist")
        files = sorted(p for p in folder.rglob("*") if p.suffix in {".txt", ".md"} and p.is_file())
        stamp = tuple((str(p), p.stat().st_mtime) for p in files)
        with self._lock:
            idx = self._indexes.get(folder)
            if idx is None or idx.stamp != stamp:
                docs = [(p.name, para.strip()) for p in files
                        for para in re.split(r"\n\s*\n", p.read_text("utf-8", "replace")) if para.strip()]
                idx = _Index(stamp, docs, BM25([tokenize(text) for _, text in docs]))
                self._indexes[folder] = idx
            return idx

    def run(self, args: Mapping[str, str], ctx: ToolContext) -> str:
        """Return the best paragraphs for ``args["query"]``."""
        text = args.get("query", "")
        query = tokenize(text)
        if not query:
            raise ToolError("missing or empty argument 'query'")
        folder = ctx.options.get("dir", "")
        if not folder:
            raise ToolError("no knowledge-base folder: set tools.kb_search.options.dir in the workflow")
        try:
            k = max(1, min(20, int(args.get("k", "3"))))
        except ValueError:
            raise ToolError(f"k must be a number, got {args.get('k')!r}") from None
        idx = self._index(ctx.path(folder).resolve())
        mode = ctx.options.get("mode", "bm25")
        if mode == "semantic":
            scores = self._semantic.scores([t for _, t in idx.docs], text) if idx.docs else []
        elif mode == "bm25":
            scores = idx.bm25.scores(query)
        else:
            raise ToolError(f"unknown kb_search mode {mode!r}; use bm25 or semantic")
        ranked = sorted(enumerate(scores), key=lambda p: (-p[1], p[0]))
        hits = [idx.docs[i] for i, score in ranked[:k] if score > 0]
        if not hits:
            return "no match"
        return "\n".join(f"{name}: {' '.join(text.split())[:_MAX_CHARS]}" for name, text in hits)
