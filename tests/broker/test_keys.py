"""Key layout: one prefix, one hash tag per partition for everything a handoff touches."""

from __future__ import annotations

import re

import pytest

from baton.broker import Keys


def _slot_tag(key: str) -> str:
    m = re.search(r"\{([^}]*)\}", key)
    assert m, key
    return m.group(1)


def test_handoff_keys_share_the_run_partition_tag() -> None:
    keys = Keys("app", partitions=8)
    run = "0123456789abcdef"
    p = keys.partition(run)
    group = [keys.run_stream("seed", "planner", run), keys.run_stream("seed", "researcher", run), keys.run(run),
             keys.pad(run, "Alice"), keys.pads(run), keys.done(run, "m"), keys.results(p),
             keys.dead(p), keys.memory(run), keys.join(run, "g")]
    assert {_slot_tag(k) for k in group} == {keys.tag(p).split("{")[1].rstrip("}")}
    assert _slot_tag(group[0]).split(".")[0] == f"p{p}"
    assert all(k.startswith("app:") for k in group)


def test_partitions_spread_runs() -> None:
    keys = Keys(partitions=4)
    assert {keys.partition(f"run-{i}") for i in range(200)} == {0, 1, 2, 3}
    assert Keys().partition("anything") == 0
    four = Keys(partitions=4)
    assert four.streams("seed", "planner") == [
        four.stream("seed", "planner", i, lane) for i in range(4) for lane in ("interactive", "batch")]
    assert four.streams("seed", "planner", [1, 3]) == [
        four.stream("seed", "planner", p, lane) for p in (1, 3) for lane in ("interactive", "batch")]
    assert four.stream("seed", "planner", 0, "batch") == f"{four.tag(0)}:wf:seed:lane:batch:stream:planner"


@pytest.mark.parametrize("prefix", ["", "a{b", "a b"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Keys(prefix)


def test_stream_keys_name_their_workflow_and_parse_back() -> None:
    keys = Keys("app:x", partitions=4)
    fan, seed = keys.stream("research_fanout", "planner", 3), keys.stream("seed", "planner", 3)
    assert fan == f"{keys.tag(3)}:wf:research_fanout:stream:planner" and fan != seed
    assert keys.tag(3).startswith("app:x:{p3")
    name = keys.parse_stream(fan)
    assert name is not None and (name.workflow, name.role, name.partition) == ("research_fanout", "planner", 3)
    assert keys.parse_stream(keys.dead(0)) is None and Keys("other").parse_stream(fan) is None
    assert keys.stream_pattern() == "app:x:{p*}:wf:*:*stream:*"
    assert keys.stream_pattern("seed", "planner") == "app:x:{p*}:wf:seed:*stream:planner"


def test_a_key_names_its_kind() -> None:
    keys = Keys("app", partitions=4)
    assert [keys.kind(k) for k in (keys.run("r1"), keys.events("r1"), keys.pad("r1", "Alice"), keys.dead(2),
                                   keys.stream("seed", "planner", 3), keys.heartbeat("w1"), keys.workflows())] == [
        "run", "events", "pad", "dead", "wf", "hb", "workflows"]
    assert keys.kind("other:{p0}:run:r1") == "?" and keys.kind("app") == "?"
