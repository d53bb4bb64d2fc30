"""The audit stream read back through the shared stream pager (``broker/pages.py``), on a real
redis-server: newest first, a tenant's entries found past pages of other tenants'."""

from __future__ import annotations

import redis

from baton.broker import Keys
from baton.broker.audit import read_audit, write_audit
from baton.broker.pages import PAGE


def _write(client: redis.Redis, keys: Keys, tenant: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        write_audit(client, keys, {"who": tenant, "tenant": tenant, "method": "POST", "path": f"/v1/runs/{i}",
                                   "status": 201, "client": "127.0.0.1", "at": float(i)})


def test_the_newest_entries_come_first_and_a_tenants_are_found_past_other_pages(client: redis.Redis,
                                                                                 keys: Keys) -> None:
    _write(client, keys, "acme", 3)
    _write(client, keys, "globex", 2 * PAGE + 5, start=3)  # more than two pages of another tenant, newer
    newest = read_audit(client, keys, limit=4)
    assert [e.path for e in newest] == [f"/v1/runs/{i}" for i in range(2 * PAGE + 7, 2 * PAGE + 3, -1)]
    mine = read_audit(client, keys, limit=10, tenant="acme")
    assert [(e.path, e.status, e.at) for e in mine] == [(f"/v1/runs/{i}", 201, float(i)) for i in (2, 1, 0)]
    assert len(read_audit(client, keys, limit=2 * PAGE + 8)) == 2 * PAGE + 8
