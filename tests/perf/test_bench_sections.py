"""``bench.sections.merge_sections``: ``make bench`` rewrites its own sections of BENCHMARKS.md in
place and keeps the sections other benches and measurements wrote."""

from __future__ import annotations

from pathlib import Path

from bench.sections import merge_sections, split_sections


def _headings(path: Path) -> list[str]:
    return [heading for heading, _ in split_sections(path.read_text())[1]]


def test_a_report_replaces_its_sections_in_place_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nold header\n\n## Runs\n\nold runs\n\n## Hot path\n\nhand notes\n\n"
                    "### a subsection\n\nkept too\n\n## Targets\n\nold targets\n\n## Soak\n\nsoak figures\n")
    merge_sections(path, "# Benchmarks\n\nnew header\n\n## Runs\n\nnew runs\n\n## Targets\n\nnew targets\n")
    text = path.read_text()
    assert _headings(path) == ["## Runs", "## Hot path", "## Targets", "## Soak"]
    assert "new header" in text and "old header" not in text
    assert "new runs" in text and "old runs" not in text
    assert "new targets" in text and "old targets" not in text
    assert "hand notes" in text and "### a subsection\n\nkept too" in text and "soak figures" in text


def test_a_section_the_file_lacks_goes_after_the_one_before_it(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# B\n\n## Runs\n\nr\n\n## Hand\n\nh\n")
    merge_sections(path, "# B\n\n## Intro\n\ni\n\n## Runs\n\nr2\n\n## Events\n\ne\n")
    assert _headings(path) == ["## Intro", "## Runs", "## Events", "## Hand"]
    assert path.read_text().endswith("## Hand\n\nh\n")


def test_a_new_file_gets_the_report_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    merge_sections(path, "# B\n\nintro\n\n## Runs\n\nr\n\n## Targets\n\nt\n")
    assert path.read_text() == "# B\n\nintro\n\n## Runs\n\nr\n\n## Targets\n\nt\n"
