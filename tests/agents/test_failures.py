"""Failure classes of the HTTP backend against a real server that fails on demand."""

from __future__ import annotations

import email.utils
import socket
import time

import msgspec
import pytest

from baton.agents.backends import ECHO_SUFFIX, ModelRejected, ModelUnavailable, load_backend
from baton.agents.backends.errors import parse_retry_after
from baton.agents.backends.http import HTTPBackend, HTTPBackendError
from baton.agents.runtime.failures import classify, describe, retry_after
from baton.broker import free_port
from baton.protocol import ProtocolError, Task, decode
from tests.flaky_model import FlakyModelServer


def test_503_with_retry_after_is_an_outage_then_the_answer_comes(flaky_model: FlakyModelServer) -> None:
    flaky_model.fail(503, times=3, reason="model is loading", retry_after="1")
    backend = load_backend(flaky_model.url)
    for _ in range(3):
        with pytest.raises(ModelUnavailable) as caught:
            backend.generate(["hello"])
        assert caught.value.retry_after == 1.0 and caught.value.status == 503
        assert "model is loading" in caught.value.reason
        assert classify(caught.value) == "transient" and retry_after(caught.value) == 1.0
    assert [g.text for g in backend.generate(["hello"])] == ["hello" + ECHO_SUFFIX]
    assert flaky_model.completions == 4 and flaky_model.answered == 1


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 504])
def test_other_outage_statuses_are_transient(flaky_model: FlakyModelServer, status: int) -> None:
    flaky_model.fail(status)
    with pytest.raises(ModelUnavailable, match=f"HTTP {status}") as caught:
        load_backend(flaky_model.url).generate(["x"])
    assert caught.value.retry_after is None and classify(caught.value) == "transient"


def test_retry_after_as_an_http_date(flaky_model: FlakyModelServer) -> None:
    flaky_model.fail(429, retry_after=email.utils.formatdate(time.time() + 3600, usegmt=True))
    with pytest.raises(ModelUnavailable) as caught:
        load_backend(flaky_model.url).generate(["x"])
    assert caught.value.retry_after is not None and 3000 < caught.value.retry_after <= 3600


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_refusal_is_permanent_with_the_servers_reason(flaky_model: FlakyModelServer, status: int) -> None:
    flaky_model.fail(status, reason="prompt is longer than the context (2049 > 2048 tokens)")
    with pytest.raises(ModelRejected) as caught:
        load_backend(flaky_model.url).generate(["x"])
    assert caught.value.reason == f"HTTP {status}: prompt is longer than the context (2049 > 2048 tokens)"
    assert classify(caught.value) == "permanent" and describe(caught.value) == caught.value.reason


def test_an_unknown_status_stays_poison(flaky_model: FlakyModelServer) -> None:
    flaky_model.fail(418, reason="teapot")
    with pytest.raises(HTTPBackendError, match="HTTP 418: teapot") as caught:
        load_backend(flaky_model.url).generate(["x"])
    assert classify(caught.value) == "poison"


def test_nothing_listening_is_connection_refused() -> None:
    backend = HTTPBackend(f"http://127.0.0.1:{free_port()}/v1?model=m", timeout=5)
    with pytest.raises(ModelUnavailable) as caught:
        backend.generate(["x"])
    assert caught.value.reason == "connection refused" and classify(caught.value) == "transient"


def test_a_server_that_goes_away_and_comes_back(flaky_model: FlakyModelServer) -> None:
    backend = load_backend(flaky_model.url)
    assert backend.generate(["a"])[0].text == "a" + ECHO_SUFFIX
    flaky_model.stop()
    with pytest.raises(ModelUnavailable) as caught:
        backend.generate(["b"])
    assert classify(caught.value) == "transient"
    flaky_model.start()
    assert backend.generate(["c"])[0].text == "c" + ECHO_SUFFIX


def test_a_read_timeout_is_transient() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts connections, never answers
        port = listener.getsockname()[1]
        with pytest.raises(ModelUnavailable, match="timed out"):
            HTTPBackend(f"http://127.0.0.1:{port}/v1?model=m", timeout=0.3).generate(["x"])


def test_a_batch_of_prompts_and_the_chat_api(flaky_model: FlakyModelServer) -> None:
    texts = [g.text for g in load_backend(flaky_model.url).generate(["p", "q"])]
    assert texts == ["p" + ECHO_SUFFIX, "q" + ECHO_SUFFIX]
    chat = load_backend(flaky_model.url + "&api=chat")
    assert chat.generate(["p"])[0].text == "p" + ECHO_SUFFIX


@pytest.mark.parametrize(("header", "seconds"), [
    (None, None), ("", None), ("1", 1.0), (" 2.5 ", 2.5), ("-3", 0.0), ("soon", None), ("inf", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
])
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_parse_retry_after_date_relative_to_now() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0


def test_decode_and_validation_errors_are_permanent() -> None:
    with pytest.raises(ProtocolError) as bad:
        decode(b"not msgpack at all")
    assert classify(bad.value) == "permanent"
    with pytest.raises(msgspec.ValidationError) as invalid:
        msgspec.convert({"run_id": 1}, Task)
    assert classify(invalid.value) == "permanent"


def test_classify_leaves_unknown_exceptions_poison() -> None:
    assert classify(RuntimeError("CUDA error: device-side assert")) == "poison"
    assert classify(ValueError("bad")) == "poison"
