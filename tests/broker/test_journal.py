"""The call journal in Redis: records per message and sequence, typed reads, retention, fork reuse."""

from __future__ import annotations

import msgspec
import redis

from baton.broker import Keys, Retention
from baton.broker.journal import JOURNAL_FROM, JournalWrite, Recorded, hop_key, read_journal, write_journal


def rec(value: object, fp: str = "f") -> Recorded:
    return Recorded(kind="generate", fp=fp, value=msgspec.Raw(msgspec.json.encode(value)))


def test_records_read_back_typed_per_message_and_sequence(client: redis.Redis, keys: Keys) -> None:
    hop = hop_key("writer", 1, 0)
    write_journal(client, keys, [JournalWrite("r1", "1-0", hop, 0, rec("a")), JournalWrite("r1", "1-0", hop, 1,
                                                                                             rec({"n": 2}))])
    write_journal(client, keys, [JournalWrite("r1", "2-0", hop_key("critic", 2, 0), 0, rec("other"))])
    found = read_journal(client, keys, "r1", "1-0", hop)
    assert sorted(found.own) == [0, 1] and found.reused == {}
    assert isinstance(found.own[1], Recorded) and msgspec.json.decode(found.own[1].value) == {"n": 2}
    assert client.ttl(keys.journal("r1", "1-0")) == -1  # kept, like a record without BATON_RECORD_TTL_S
    assert client.hget(keys.journal_hops("r1"), hop) == b"1-0"


def test_retained_like_the_run_record(client: redis.Redis, keys: Keys) -> None:
    kept = Keys(keys.prefix, keys.partitions, Retention(record_ttl_s=3600))
    write_journal(client, kept, [JournalWrite("r2", "1-0", "w:0:0", 0, rec("a"))])
    assert 3590 < client.ttl(keys.journal("r2", "1-0")) <= 3600
    assert 3590 < client.ttl(keys.journal_hops("r2")) <= 3600


def test_an_unreadable_record_is_a_call_made_again(client: redis.Redis, keys: Keys) -> None:
    write_journal(client, keys, [JournalWrite("r3", "1-0", "w:0:0", 0, rec("a"))])
    client.hset(keys.journal("r3", "1-0"), mapping={"1": b"not json", "x": b"[]"})
    assert list(read_journal(client, keys, "r3", "1-0", "w:0:0").own) == [0]


def test_a_fork_reads_its_source_hop(client: redis.Redis, keys: Keys) -> None:
    write_journal(client, keys, [JournalWrite("src", "5-0", "w:1:0", 0, rec("old"))])
    client.hset(keys.run("new"), JOURNAL_FROM, "src")
    found = read_journal(client, keys, "new", "9-0", "w:1:0")
    assert found.own == {} and msgspec.json.decode(found.reused[0].value) == "old"
    assert read_journal(client, keys, "new", "9-0", "w:2:0").reused == {}
