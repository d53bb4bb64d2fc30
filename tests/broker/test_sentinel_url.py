"""``redis+sentinel://`` URLs: parsing and the errors a bad one gives (the live group is in tests/sentinel)."""

from __future__ import annotations

import pytest

from baton.broker import BrokerUnavailable, connect, connect_async
from baton.broker.sentinel import is_sentinel_url, parse


def test_parse_hosts_service_password_and_db() -> None:
    u = parse("redis+sentinel://:s3cret@10.0.0.1:26380,10.0.0.2/mymaster/2")
    assert u.sentinels == [("10.0.0.1", 26380), ("10.0.0.2", 26379)]
    assert (u.service, u.db, u.password, u.username, u.ssl) == ("mymaster", 2, "s3cret", None, False)


def test_parse_tls_user_and_sentinel_password() -> None:
    u = parse("rediss+sentinel://app:pw@s1:1/svc?db=3&sentinel_password=sp")
    assert (u.ssl, u.username, u.password, u.db, u.sentinel_password) == (True, "app", "pw", 3, "sp")


@pytest.mark.parametrize("url", [
    "redis+sentinel://s1:1/", "redis+sentinel:///svc", "redis+sentinel://s1:x/svc",
    "redis+sentinel://s1:1/svc/x", "redis+sentinel://s1:1/svc?colour=red",
])
def test_bad_urls_are_refused_with_a_reason(url: str) -> None:
    with pytest.raises(BrokerUnavailable, match="invalid REDIS_URL"):
        connect(url)
    with pytest.raises(BrokerUnavailable, match="invalid REDIS_URL"):
        connect_async(url)


def test_only_sentinel_schemes_dispatch() -> None:
    assert is_sentinel_url("redis+sentinel://a/b") and is_sentinel_url("REDISS+SENTINEL://a/b")
    assert not is_sentinel_url("redis://a:1/0") and not is_sentinel_url("redis+cluster://a:1")


def test_passwords_are_masked_in_messages() -> None:
    from baton.broker import describe_url

    shown = describe_url("rediss+sentinel://app:pw1@s1:1,s2:2/svc?sentinel_password=pw2&db=1")
    assert "pw1" not in shown and "pw2" not in shown and "s1:1,s2:2/svc" in shown
