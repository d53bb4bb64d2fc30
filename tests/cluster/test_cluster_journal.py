"""The call journal on Redis Cluster: a batch of records of runs in every partition, each in its run's slot."""

from __future__ import annotations

import msgspec
from redis.crc import key_slot

from baton.broker import Keys, Redis, Retention
from baton.broker.journal import JournalWrite, Recorded, read_journal, write_journal


def test_journal_writes_over_every_primary_read_back(cclient: Redis, ckeys: Keys) -> None:
    runs = [f"run-{i}" for i in range(12)]
    assert len({ckeys.partition(r) for r in runs}) > 3
    value = msgspec.Raw(msgspec.json.encode("out"))
    kept = Keys(ckeys.prefix, ckeys.partitions, Retention(record_ttl_s=60))
    write_journal(cclient, kept, [JournalWrite(r, "1-0", "w:0:0", 0, Recorded(kind="step", fp="x", value=value))
                                  for r in runs])
    for r in runs:
        assert key_slot(ckeys.journal(r, "1-0").encode()) == key_slot(ckeys.run(r).encode())
        assert read_journal(cclient, ckeys, r, "1-0", "w:0:0").own[0].fp == "x"
