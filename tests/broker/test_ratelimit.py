"""The shared rate-limit script (``lua/ratelimit.lua``) against a real Redis."""

from __future__ import annotations

import re
import time

import redis

from baton.broker import Keys
from baton.broker.ratelimit import reserve, settle, usage
from tests.minutes import inside_a_minute

MODEL = "http://models.example.com:8080/v1/tiny-gpt2"


def _reserve(client: redis.Redis, keys: Keys, *, rpm: int = 0, tpm: int = 0, requests: int = 1, tokens: int = 0,
             model: str = MODEL):
    return reserve(client, keys, model, rpm=rpm, tpm=tpm, requests=requests, tokens=tokens)


def test_key_is_safe_and_one_per_model(keys: Keys) -> None:
    a, b = keys.rate_limit("org/model:v1"), keys.rate_limit("org:model/v1")
    assert a != b
    for key in (a, b, keys.rate_limit(MODEL), keys.rate_limit("/")):
        assert key.startswith("baton:rl:")
        assert re.fullmatch(r"[A-Za-z0-9._-]+", key.removeprefix("baton:rl:").replace(":", "")), key
        assert key.count(":") == 3
    assert keys.rate_limit(MODEL) == keys.rate_limit(MODEL)


def test_grants_the_burst_then_answers_a_wait(client: redis.Redis, keys: Keys) -> None:
    grants = [_reserve(client, keys, rpm=60) for _ in range(6)]  # burst: a tenth of 60
    assert all(g.granted for g in grants)
    refused = _reserve(client, keys, rpm=60)
    assert not refused.granted and 0 < refused.wait_ms <= 1000


def test_burst_is_at_most_a_tenth_of_the_minute(client: redis.Redis, keys: Keys) -> None:
    assert _reserve(client, keys, rpm=600, requests=60).granted
    assert not _reserve(client, keys, rpm=600).granted
    assert _reserve(client, keys, tpm=1000, tokens=100, model="other").granted
    waiting = _reserve(client, keys, tpm=1000, tokens=1, model="other")
    assert not waiting.granted and waiting.wait_ms <= 60


def test_waiting_the_answer_is_enough(client: redis.Redis, keys: Keys) -> None:
    for _ in range(6):
        _reserve(client, keys, rpm=60)
    answer = _reserve(client, keys, rpm=60)
    assert not answer.granted
    time.sleep(answer.wait_ms / 1000 + 0.01)
    assert _reserve(client, keys, rpm=60).granted


def test_a_call_bigger_than_the_burst_waits_for_a_full_bucket(client: redis.Redis, keys: Keys) -> None:
    assert _reserve(client, keys, rpm=60, requests=1).granted
    big = _reserve(client, keys, rpm=60, requests=20)  # 20 > burst 6: only once nothing is owed
    assert not big.granted and big.wait_ms <= 1000
    time.sleep(big.wait_ms / 1000 + 0.01)
    assert _reserve(client, keys, rpm=60, requests=20).granted
    after = _reserve(client, keys, rpm=60)
    assert not after.granted and after.wait_ms > 10_000  # the 20 are paid for at 1 a second


def test_requests_and_tokens_are_reserved_together(client: redis.Redis, keys: Keys) -> None:
    inside_a_minute(client)
    assert _reserve(client, keys, rpm=600, tpm=1000, requests=1, tokens=100).granted
    refused = _reserve(client, keys, rpm=600, tpm=1000, requests=1, tokens=50)
    assert not refused.granted
    (model,) = usage(client, keys)
    assert (model.requests, model.tokens) == (1, 100)  # a refusal reserves nothing


def test_settle_gives_back_unused_tokens(client: redis.Redis, keys: Keys) -> None:
    inside_a_minute(client)
    first = _reserve(client, keys, tpm=1000, tokens=100)
    assert first.granted
    assert not _reserve(client, keys, tpm=1000, tokens=50).granted
    settle(client, keys, MODEL, rpm=0, tpm=1000, unused_tokens=80, minute=first.minute)
    assert _reserve(client, keys, tpm=1000, tokens=50).granted
    (model,) = usage(client, keys)
    assert model.tokens == 100 - 80 + 50 and model.total_tokens == 70


def test_state_is_in_server_time(client: redis.Redis, keys: Keys) -> None:
    inside_a_minute(client)
    assert _reserve(client, keys, rpm=60).granted
    secs, micros = client.time()
    tat = int(client.hget(keys.rate_limit(MODEL), "rtat"))
    assert 0 < tat - (secs * 1_000_000 + micros) <= 1_000_000  # one request's interval ahead of Redis TIME
    assert int(client.hget(keys.rate_limit(MODEL), "min")) == secs // 60


def test_unlimited_always_grants_and_still_counts(client: redis.Redis, keys: Keys) -> None:
    inside_a_minute(client)
    assert all(_reserve(client, keys, requests=50, tokens=500).granted for _ in range(20))
    (model,) = usage(client, keys)
    assert (model.rpm, model.tpm, model.requests, model.tokens) == (0, 0, 1000, 10_000)


def test_usage_names_each_model_with_its_limits(client: redis.Redis, keys: Keys) -> None:
    inside_a_minute(client)
    assert usage(client, keys) == []
    _reserve(client, keys, rpm=60, tpm=6000, requests=3, tokens=120)
    _reserve(client, keys, rpm=30, requests=2, model="echo")
    figures = {u.model: u for u in usage(client, keys)}
    assert set(figures) == {MODEL, "echo"}
    limited = figures[MODEL]
    assert (limited.rpm, limited.tpm, limited.requests, limited.tokens) == (60, 6000, 3, 120)
    assert (figures["echo"].rpm, figures["echo"].requests) == (30, 2)
    assert client.ttl(keys.rate_limit("echo")) > 0


def test_smaller_calls_wait_behind_a_call_bigger_than_the_burst(client: redis.Redis, keys: Keys) -> None:
    for _ in range(6):
        assert _reserve(client, keys, rpm=60).granted
    big = _reserve(client, keys, rpm=60, requests=20)
    assert not big.granted
    time.sleep(1.1)  # a single request would fit again now (one interval paid back)...
    small = _reserve(client, keys, rpm=60)
    assert not small.granted and small.wait_ms > big.wait_ms - 1100  # ...but waits behind the big one
    time.sleep(big.wait_ms / 1000 - 1.1 + 0.01)
    assert _reserve(client, keys, rpm=60, requests=20).granted
