"""Security: a worker under a least-privilege ACL user, TLS (``rediss://``), no eval/exec/pickle.

``ACL LOG`` is the oracle: a worker that needed anything outside its rules would leave an entry.
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from baton.broker import EmbeddedRedis, Keys, RoleStreams, free_port, get_run, scratchpad, submit
from baton.broker.acl import RoleNeeds, role_acl
from baton.broker.dlq import list_dead
from baton.broker.reviews import decide, find_review
from baton.broker.scripts import library, setup_library
from baton.protocol import ReviewDecision, Task, encode
from tests.cli import baton
from tests.conftest import ROOT, Workers
from tests.waiting import wait_for


def _acl_user(admin: redis.Redis, keys: Keys, role: str, nxt: list[str], password: str) -> str:
    """A role user, with baton's Functions library loaded by the admin (as ``baton setup`` does)."""
    rules = role_acl(keys, "seed", role, RoleNeeds(next_roles=tuple(nxt)), password=password)
    admin.execute_command("ACL", "SETUSER", *rules)
    setup_library(admin)
    return rules[0]


SPIN = "while true do end"


def _sweeps(echo: Workers) -> list[int]:
    """Per worker, the janitor sweeps it logged (a sweep logs once it has done everything, reviews included)."""
    return [p.read_text().count("janitor: trimmed") for p in sorted(echo.log_dir.glob("worker-*.log"))]


def test_role_users_call_batons_functions_and_cannot_load_code(
    private_redis: EmbeddedRedis, private_client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    """A role's credentials cannot load a busy loop (``BUSY`` for everyone): only the admin loads code,
    with ``baton setup``; before it a role's worker stops with a one-line error saying so."""
    admin = private_client
    rules = role_acl(keys, "seed", "planner", RoleNeeds(next_roles=("researcher",)), password="pw")
    admin.execute_command("ACL", "SETUSER", *rules)
    url = f"redis://{rules[0]}:pw@127.0.0.1:{private_redis.port}/0"
    as_role = redis.Redis.from_url(url)
    lib = library().name
    for command in (("SCRIPT", "LOAD", SPIN), ("EVAL", SPIN, 0), ("EVALSHA", "0" * 40, 0), ("EVAL_RO", SPIN, 0),
                    ("FUNCTION", "LOAD", f"#!lua name=spin\nredis.register_function('spin', function() {SPIN} end)"),
                    ("FUNCTION", "FLUSH"), ("FUNCTION", "DELETE", lib), ("FUNCTION", "RESTORE", b"x"),
                    ("SCRIPT", "FLUSH")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            as_role.execute_command(*command)
    refused = baton("worker", "planner", env={**echo.env, "REDIS_URL": url}, timeout=120)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "run `baton setup`" in refused.stderr and lib in refused.stderr
    done = baton("setup", env={**echo.env, "REDIS_URL": private_redis.url})
    assert done.returncode == 0, done.stderr
    assert f"loaded Functions library {lib} on 1 primary" in done.stdout
    assert as_role.execute_command("FCALL", f"{lib}_version", 0) == lib.encode()
    assert admin.execute_command("FUNCTION", "LIST", "LIBRARYNAME", lib)
    as_role.close()


def test_worker_runs_under_a_least_privilege_user_and_is_refused_elsewhere(
    private_redis: EmbeddedRedis, private_client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    admin = private_client
    user = _acl_user(admin, keys, "planner", ["researcher"], "planner-secret")
    admin.acl_log_reset()
    url = f"redis://{user}:planner-secret@127.0.0.1:{private_redis.port}/0"
    env = {"REDIS_URL": url, "BATON_JANITOR_INTERVAL_S": "0.3", "BATON_RECORD_TTL_S": "3600"}
    # an entry held by a dead consumer, so the worker's reclaim path runs under the ACL too
    orphan = submit(admin, keys, Task(run_id="orphan", role="planner", task="held by the dead"))
    RoleStreams(admin, keys, "seed", "planner", "planner-gone-1-abc").read(pending=False, count=1, block_ms=100)
    proc = echo.spawn("planner", env=env)
    runs = [orphan] + [submit(admin, keys, Task(run_id=f"acl-{i}", role="planner", task="t")) for i in range(2)]
    wait_for(lambda: all((get_run(admin, keys, r) or {}).get("role") == "researcher" for r in runs),
               what="the planner handoffs under the ACL user", logs=echo.logs)
    wait_for(lambda: admin.xlen(keys.stream("seed", "planner")) == 0, what="the janitor under the ACL user",
               logs=echo.logs)
    # a forged decision on a role without review is dead-lettered unread (its user may not read reviews)
    forged = Task(run_id="acl-forged", role="planner", task="t", review=ReviewDecision(
        review_id="r-forged", decision="approve", output="FORGED"))
    admin.xadd(keys.run_stream("seed", "planner", forged.run_id), {"msg": encode(forged)})
    wait_for(lambda: any("has no review" in d.letter.reason for d in list_dead(admin, keys)),
             what="the forged decision dead-lettered", logs=echo.logs)
    # a janitor line is logged after a whole sweep (reviews included): one more, trimming the dead letter's entry
    before = sum(_sweeps(echo))
    wait_for(lambda: sum(_sweeps(echo)) > before, what="a whole sweep under the ACL user", logs=echo.logs)
    assert proc.poll() is None
    assert admin.acl_log() == [], "the worker needed something its ACL does not grant"

    as_role = redis.Redis.from_url(url)
    refused: list[Callable[[], Any]] = [
        lambda: as_role.xadd(keys.stream("seed", "summarizer"), {"msg": b"x"}),
        lambda: as_role.xreadgroup("summarizer", "c", {keys.stream("seed", "summarizer"): ">"}),
        lambda: as_role.hset("elsewhere", "k", "v"),
        lambda: as_role.flushall(),
        lambda: as_role.config_get("*"),
        lambda: as_role.keys("*"),
        # the seed roles have no review: no review keys
        lambda: as_role.hgetall(keys.review("acl-0", "r-1")),
        lambda: as_role.zrange(keys.reviews(), 0, -1),
        lambda: as_role.hget(keys.review_runs(), "r-1"),
    ]
    for call in refused:
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
    as_role.close()
    log = admin.acl_log()
    assert {e["username"] for e in log} == {user}
    refused_keys = {keys.stream("seed", "summarizer"), "elsewhere", "flushall", "config|get", "keys",
                    keys.review("acl-0", "r-1"), keys.reviews(), keys.review_runs()}
    assert {e["object"] for e in log} >= refused_keys


def _certs(tmp: Path) -> tuple[Path, Path, Path]:
    ca_key, ca, key, csr, crt, ext = (tmp / n for n in ("ca.key", "ca.crt", "server.key", "server.csr",
                                                        "server.crt", "san.cnf"))
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for cmd in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1",
         "-subj", "/CN=baton-test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt, "-days", "1",
         "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True)
    return ca, crt, key


def test_worker_and_cli_over_tls_with_a_password(tmp_path: Path, keys: Keys, echo: Workers) -> None:
    ca, crt, key = _certs(tmp_path)
    tls_port = free_port()
    server = EmbeddedRedis(tmp_path / "tls-redis", extra_args=[
        "--tls-port", str(tls_port), "--tls-cert-file", str(crt), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
    ]).start()
    try:
        admin = redis.Redis(port=server.port)
        user = _acl_user(admin, keys, "planner", ["researcher"], "tls-secret")
        url = f"rediss://{user}:tls-secret@127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"
        echo.spawn("planner", env={"REDIS_URL": url})
        run_id = submit(admin, keys, Task(run_id="over-tls", role="planner", task="encrypted"))
        wait_for(lambda: (get_run(admin, keys, run_id) or {}).get("role") == "researcher",
                   what="the handoff over TLS", logs=echo.logs)
        assert admin.acl_log() == []
        plain = baton("dlq", "list", env={**echo.env, "REDIS_URL": url})
        assert plain.returncode == 0 and "no dead letters" in plain.stdout, plain.stderr
        wrong = baton("dlq", "list", env={**echo.env, "REDIS_URL": url.replace("tls-secret", "nope")})
        assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1 and "credentials" in wrong.stderr
        admin.close()
    finally:
        server.stop()


FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "cloudpickle"}


def test_no_eval_exec_or_pickle_on_the_message_path() -> None:
    offenders: list[str] = []
    for package in ("baton.protocol", "baton.broker", "agents"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
                    offenders.append(f"{where} calls {node.func.id}()")
                elif isinstance(node, ast.Import):
                    offenders += [f"{where} imports {a.name}" for a in node.names
                                  if a.name.split(".")[0] in FORBIDDEN_MODULES]
                elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
                    offenders.append(f"{where} imports from {node.module}")
    assert offenders == []


def test_one_runs_scratchpad_never_enters_another_runs_prompt(
    client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    echo.spawn("planner")  # echo answers with the prompt itself, so the response shows the memory used
    first = submit(client, keys, Task(run_id="secret-run", role="planner", task="the password is swordfish"))
    wait_for(lambda: client.xlen(keys.stream("seed", "researcher")) == 1, what="the first run", logs=echo.logs)
    second = submit(client, keys, Task(run_id="other-run", role="planner", task="what is the password?"))
    wait_for(lambda: client.xlen(keys.stream("seed", "researcher")) == 2, what="the second run", logs=echo.logs)
    (mine,) = scratchpad(client, keys, second, "Alice")
    assert "Memory: []" in mine.response and "swordfish" not in mine.response
    assert "swordfish" in scratchpad(client, keys, first, "Alice")[0].response


def test_fanout_workflow_runs_under_the_acl_users_baton_acl_prints(
    private_redis: EmbeddedRedis, private_client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    """Shared memory, tools and joins need keys beyond the seed's: ``baton acl`` grants them."""
    import shlex

    admin = private_client
    assert baton("setup", env={**echo.env, "REDIS_URL": private_redis.url}).returncode == 0
    for role in ("planner", "researcher", "summarizer"):
        printed = baton("acl", role, "--workflow", "research_fanout", "--password", f"{role}-pw",
                        env={**echo.env, "REDIS_URL": private_redis.url})
        assert printed.returncode == 0, printed.stderr
        words = shlex.split(printed.stdout)
        assert words[:2] == ["ACL", "SETUSER"]
        admin.execute_command(*words)
    admin.acl_log_reset()
    for role in ("planner", "researcher", "summarizer"):
        url = f"redis://baton-research_fanout-{role}:{role}-pw@127.0.0.1:{private_redis.port}/0"
        echo.spawn(role, "--workflow", "research_fanout", env={"REDIS_URL": url})
    submit(admin, keys, Task(run_id="acl-fanout", role="planner", task="Explain.", workflow="research_fanout"))
    wait_for(lambda: (get_run(admin, keys, "acl-fanout") or {}).get("status") in {"done", "failed"},
               what="the fan-out run under ACL users", logs=echo.logs)
    assert (get_run(admin, keys, "acl-fanout") or {})["status"] == "done", echo.logs()
    assert admin.acl_log() == [], "a worker needed something its ACL does not grant"
    assert len(scratchpad(admin, keys, "acl-fanout", "Bob")) == 3


def test_reviewed_workflow_runs_under_the_acl_users_baton_acl_prints(
    private_redis: EmbeddedRedis, private_client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    """Only the reviewed planner's user gets the review keys; it parks and resumes under it, and the
    researcher's and summarizer's workers (no review keys) run and sweep with an empty ``ACL LOG``."""
    import shlex

    admin = private_client
    assert baton("setup", env={**echo.env, "REDIS_URL": private_redis.url}).returncode == 0
    for role in ("planner", "researcher", "summarizer"):
        printed = baton("acl", role, "--workflow", "reviewed", "--password", f"{role}-pw",
                        env={**echo.env, "REDIS_URL": private_redis.url})
        assert printed.returncode == 0, printed.stderr
        assert ("reviewruns" in printed.stdout) == (role == "planner"), printed.stdout
        admin.execute_command(*shlex.split(printed.stdout))
    admin.acl_log_reset()
    for role in ("planner", "researcher", "summarizer"):
        url = f"redis://baton-reviewed-{role}:{role}-pw@127.0.0.1:{private_redis.port}/0"
        echo.spawn(role, "--workflow", "reviewed", env={"REDIS_URL": url, "BATON_JANITOR_INTERVAL_S": "0.3"})
    submit(admin, keys, Task(run_id="acl-reviewed", role="planner", task="Explain.", workflow="reviewed"))
    wait_for(lambda: (get_run(admin, keys, "acl-reviewed") or {}).get("status") == "review",
             what="the planner parked under its ACL user", logs=echo.logs)
    review = find_review(admin, keys, "acl-reviewed")
    assert review is not None and review.pending
    decide(admin, keys, review.review_id, "approve")
    wait_for(lambda: (get_run(admin, keys, "acl-reviewed") or {}).get("status") in {"done", "failed"},
             what="the resumed run under ACL users", logs=echo.logs)
    assert (get_run(admin, keys, "acl-reviewed") or {})["status"] == "done", echo.logs()
    streams = [keys.stream("reviewed", r) for r in ("planner", "researcher", "summarizer")]
    wait_for(lambda: all(n > 0 for n in _sweeps(echo)) and all(admin.xlen(s) == 0 for s in streams),
             what="every worker's janitor under its ACL user", logs=echo.logs)
    assert admin.acl_log() == [], "a worker needed something its ACL does not grant"
    assert len(scratchpad(admin, keys, "acl-reviewed", "Eve")) == 1
