#!/usr/bin/env python3
"""Print the Debian mirror this machine's apt uses for a suite (for docker/build-base.sh).

Usage: docker/apt_mirror.py SUITE [APT_ETC]      (APT_ETC defaults to /etc/apt)

Reads ``sources.list`` and ``sources.list.d/*.list`` (one-line format) and
``sources.list.d/*.sources`` (deb822), in that order, keeping ``deb`` sources (not ``deb-src``,
not ``Enabled: no``) with an http, https or file URI. Prints the URI of the first source that
lists SUITE; failing that, of the first with a plain suite (no ``-updates``/``-security``),
since a Debian archive serves every release. Exits 1 with a one-line message when there is none.
The repository names no mirror: the machine's own configuration does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

Source = tuple[str, list[str]]
SCHEMES = ("http", "https", "file")


def one_line(path: Path) -> Iterator[Source]:
    """``deb [options] URI SUITE COMPONENT...`` lines."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        words = words[1:]
        if words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            yield words[0], [words[1]]


def deb822(path: Path) -> Iterator[Source]:
    """Stanzas of ``Types: deb`` / ``URIs:`` / ``Suites:`` fields."""
    for stanza in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split()


def sources(etc: Path) -> list[Source]:
    """Every usable ``deb`` source, in apt's file order."""
    found: list[Source] = []
    for path in [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            found += one_line(path)
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        found += deb822(path)
    return [(uri.rstrip("/"), suites) for uri, suites in found if uri.split(":", 1)[0] in SCHEMES]


def mirror_for(suite: str, etc: Path) -> str | None:
    """The first source listing ``suite``, else the first with a plain suite name."""
    usable = sources(etc)
    for uri, suites in usable:
        if suite in suites:
            return uri
    for uri, suites in usable:
        if any("-" not in s and "/" not in s for s in suites):
            return uri
    return None


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    etc = Path(argv[2] if len(argv) == 3 else "/etc/apt")
    uri = mirror_for(argv[1], etc)
    if uri is None:
        print(f"no deb source for {argv[1]} in {etc} (sources.list, sources.list.d/*.list, *.sources)", file=sys.stderr)
        return 1
    print(uri)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
