"""docker/apt_mirror.py: build-base.sh takes its Debian mirror from the machine's apt configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "apt_mirror.py"


def mirror(etc: Path, suite: str = "bookworm") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), suite, str(etc)], capture_output=True, text=True)


def apt_etc(tmp_path: Path, sources_list: str = "", **parts: str) -> Path:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    if sources_list:
        (etc / "sources.list").write_text(sources_list)
    for name, text in parts.items():
        (etc / "sources.list.d" / name.replace("_", ".", 1)).write_text(text)
    return etc


def test_deb822_source_listing_the_suite_wins(tmp_path: Path) -> None:
    etc = apt_etc(
        tmp_path,
        debian_sources=(
            "Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
            "Types: deb-src deb\n# a comment\nURIs: http://mirror.test/debian/\nSuites: bookworm bookworm-updates\n"
            "Components: main\n"
        ),
    )
    proc = mirror(etc)
    assert (proc.returncode, proc.stdout.strip()) == (0, "http://mirror.test/debian")


def test_one_line_format_with_options_comes_first(tmp_path: Path) -> None:
    etc = apt_etc(
        tmp_path,
        "# deb http://commented.test/debian bookworm main\n"
        "deb-src http://src.test/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] https://list.test/debian bookworm main contrib\n",
        debian_sources="Types: deb\nURIs: http://later.test/debian\nSuites: bookworm\n",
    )
    assert mirror(etc).stdout.strip() == "https://list.test/debian"


def test_disabled_stanzas_and_other_suites_fall_back_to_a_plain_suite(tmp_path: Path) -> None:
    etc = apt_etc(
        tmp_path,
        a_sources="Types: deb\nURIs: http://off.test/debian\nSuites: bookworm\nEnabled: no\n",
        b_list="deb http://sec.test/debian-security trixie-security main\ndeb http://main.test/debian trixie main\n",
    )
    assert mirror(etc).stdout.strip() == "http://main.test/debian"


def test_no_source_is_a_one_line_error(tmp_path: Path) -> None:
    etc = apt_etc(tmp_path, b_list="deb cdrom:[Debian]/ bookworm main\n")
    proc = mirror(etc)
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "no deb source for bookworm" in proc.stderr


def test_build_base_names_no_mirror_host() -> None:
    text = (ROOT / "docker" / "build-base.sh").read_text()
    assert "apt_mirror.py" in text and "http://" not in text and "https://" not in text
