"""BENCHMARKS.md, written section by section: each bench replaces the sections it measured, in
place, and keeps every other one (a ``## `` heading starts a section)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["merge_sections", "split_sections", "write_section"]


def split_sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``(prelude, [(heading, section)...])``: the text before the first ``## `` line, then each
    section from its ``## `` line to the next one (``### `` subsections stay inside)."""
    prelude: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            sections.append((line.strip(), [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            prelude.append(line)
    return _block(prelude), [(heading, _block(lines)) for heading, lines in sections]


def _block(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n") + "\n\n" if any(line.strip() for line in lines) else ""


def merge_sections(path: Path, text: str) -> None:
    """Write ``text`` (a prelude and sections) into ``path``: its prelude replaces the file's, each
    of its sections replaces the file's section of the same heading where it stands, a section
    the file lacks goes after the one before it in ``text`` (first when it is ``text``'s first),
    and every other section of the file is kept as it is."""
    prelude, new = split_sections(text)
    old = split_sections(path.read_text())[1] if path.exists() else []
    mine = dict(new)
    out = [(heading, mine.get(heading, body)) for heading, body in old]
    placed = {heading for heading, _ in old}
    at = 0  # just after the last of ``new`` placed so far (0: before every section)
    for heading, body in new:
        if heading in placed:
            at = next(i for i, (h, _) in enumerate(out) if h == heading) + 1
            continue
        out.insert(at, (heading, body))
        placed.add(heading)
        at += 1
    path.write_text((prelude + "".join(body for _, body in out)).rstrip("\n") + "\n")


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
