"""One section of BENCHMARKS.md, written in place by the bench that measured it."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_section"]


def write_section(path: Path, section: str, lines: list[str]) -> None:
    """Replace the section headed ``section`` (its ``## `` line is ``lines[0]``) with ``lines``, or
    insert it before the profiles ("Where the time goes"), else at the end."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    body = "\n".join(lines).rstrip() + "\n\n"
    start = text.find(section)
    if start >= 0:
        end = text.find("\n## ", start + len(section))
        text = text[:start] + body + (text[end + 1:] if end >= 0 else "")
    else:
        at = text.find("## Where the time goes")
        text = text[:at] + body + text[at:] if at >= 0 else text.rstrip() + "\n\n" + body
    path.write_text(text.rstrip("\n") + "\n")
