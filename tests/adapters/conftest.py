"""One ``baton serve-model`` process (the offline twin) for every adapter test of the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving.process import serve_model


@pytest.fixture(scope="session")
def model_server(twin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``/v1`` base URL of a real ``baton serve-model --model <twin>``."""
    log = tmp_path_factory.mktemp("serve-model") / "serve.log"
    with serve_model(["--model", str(twin), "--replicas", "1"], log, timeout=240) as url:
        yield url
