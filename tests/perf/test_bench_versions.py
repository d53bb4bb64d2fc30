"""``bench.versions``' version specs: ``REV`` or ``REV:NAME=VALUE,...`` (settings of that version's workers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common import ROOT
from bench.versions import Version, _with_settings


def test_a_spec_with_settings_shares_its_version_and_passes_them_to_the_workers(tmp_path: Path) -> None:
    prepared: dict[str, Version] = {}
    plain = _with_settings(prepared, "work", tmp_path)
    tuned = _with_settings(prepared, "work:BATON_STREAM_TOKENS=0,BATON_LOG_LEVEL=WARNING", tmp_path)
    assert plain.cwd == tuned.cwd == ROOT and list(prepared) == ["work"]
    assert plain.settings == {} and tuned.settings == {"BATON_STREAM_TOKENS": "0", "BATON_LOG_LEVEL": "WARNING"}
    assert tuned.label == plain.label + " with `BATON_STREAM_TOKENS=0`, `BATON_LOG_LEVEL=WARNING`"


def test_a_setting_without_a_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        _with_settings({}, "work:BATON_STREAM_TOKENS", tmp_path)
