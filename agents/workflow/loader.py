"""Workflow files: TOML decoded into ``Workflow`` Structs, with one-line errors on bad files.

Workflows shipped with baton live in ``agents/workflow/shipped/*.toml`` and can be
named without a path: ``baton run --workflow research_fanout "..."``. A file path always wins.
Besides the Structs' own checks, loading checks that every tool a workflow names is a known tool.
A ``[budget]`` table sets each run's default limits (``max_tokens = 2000``, ``max_model_calls``,
``max_tool_calls``; see ``baton.protocol.Budget``).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

import msgspec
import msgspec.inspect as mi

from ...broker import Keys, Redis
from ...broker.drive import Op, run
from ...broker.workflows import registered_workflow_op, registered_workflows_op
from ...protocol import DEFAULT_WORKFLOW
from .spec import SEED, Workflow, WorkflowError

__all__ = ["load", "loads", "named", "named_op", "packaged", "validate_tools"]


def validate_tools(wf: Workflow, *, source: str = "<workflow>") -> Workflow:
    """Check that every tool ``wf`` names (allow-lists, steps, tool settings) is registered; tools of
    the workflow's MCP servers (``SERVER.TOOL``) are known only once connected, so they pass here."""
    from ..tools.registry import known_tools  # imported lazily: tools import workflow Structs

    known = known_tools()
    named = {t for r in wf.roles for t in r.tools} | set(wf.tools)
    for name in sorted(named):
        if name.split(".", 1)[0] in wf.mcp and "." in name:
            continue
        if name not in known:
            raise WorkflowError(f"{source}: unknown tool {name!r} (known: {', '.join(sorted(known))})")
    return wf


def loads(text: str | bytes, *, source: str = "<workflow>", base_dir: str = "") -> Workflow:
    """Decode a workflow from TOML text; ``WorkflowError`` names the file and the problem."""
    try:
        wf = msgspec.toml.decode(text, type=Workflow)
    except msgspec.ValidationError as exc:
        if _AT_HANDLER.search(str(exc)):
            where = str(exc).rsplit(" - at ", 1)[-1]
            raise WorkflowError(f"{source}: a handler is 'pkg.module:function' - at {where}") from None
        raise WorkflowError(f"{source}: {exc}{_choices_hint(str(exc))}") from None
    except msgspec.DecodeError as exc:
        raise WorkflowError(f"{source}: not valid TOML: {exc}") from None
    if base_dir and not wf.base_dir:
        wf = msgspec.structs.replace(wf, base_dir=base_dir)
    return validate_tools(wf, source=source)


_AT_HANDLER = re.compile(r"matching regex .* - at `\$\.roles\[\d+\]\.handler`$")
_AT_FIELD = re.compile(r"^Invalid enum value .* - at `\$\S*\.(\w+)`$")


def _choices_hint(message: str) -> str:
    """`` (use a, b or c)`` when ``message`` rejects a value of a ``Literal`` field, else ``""``."""
    m = _AT_FIELD.match(message)
    values = _literal_fields().get(m.group(1), ()) if m else ()
    return f" (use {', '.join(values[:-1])} or {values[-1]})" if len(values) > 1 else ""


@cache
def _literal_fields() -> dict[str, tuple[str, ...]]:
    """Every ``Literal`` field of the workflow Structs by field name, with its allowed values."""
    found: dict[str, tuple[str, ...]] = {}
    todo: list[mi.Type] = [mi.type_info(Workflow)]
    while todo:
        t = todo.pop()
        if isinstance(t, mi.StructType):
            for f in t.fields:
                if isinstance(f.type, mi.LiteralType):
                    found[f.name] = tuple(str(v) for v in f.type.values)
                todo.append(f.type)
        elif isinstance(t, mi.ListType | mi.DictType):
            todo.append(t.item_type if isinstance(t, mi.ListType) else t.value_type)
        elif isinstance(t, mi.UnionType):
            todo += t.types
        elif isinstance(t, mi.Metadata):
            todo.append(t.type)
    return found


def packaged() -> dict[str, Path]:
    """The workflows shipped with baton, by name (file stem)."""
    root = resources.files("baton.agents.workflow").joinpath("shipped")
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".toml")}


def load(path: Path) -> Workflow:
    """Read and decode a workflow file, or a shipped workflow named without a path.

    Relative paths inside the workflow (e.g. a ``kb_search`` folder) are resolved against the
    file's directory.
    """
    if not path.exists() and path.parent == Path(".") and path.stem in packaged():
        path = packaged()[path.stem]
    try:
        data = path.read_bytes()
    except OSError as exc:
        hint = f" (shipped workflows: {', '.join(sorted(packaged()))})" if not path.exists() else ""
        raise WorkflowError(f"cannot read workflow file {path}: {exc.strerror}{hint}") from None
    return loads(data, source=str(path), base_dir=str(path.resolve().parent))


def named(name: str | None, *, files: bool = True, client: Redis | None = None, keys: Keys | None = None) -> Workflow:
    """The workflow ``name`` names (see :func:`named_op`; ``client`` and ``keys``: look registered ones up too)."""
    return run(named_op(name, files=files, keys=keys if client is not None else None), client)


def named_op(name: str | None, *, files: bool = True, keys: Keys | None = None) -> Op[Workflow]:
    """The workflow ``name`` names: the seed chain (no name, or ``seed``), a shipped workflow's name,
    (``files``) a TOML file's path, or (with ``client``) a workflow an app's workers registered
    (``baton worker --app``; ``agents/workflow/registry.py``). ``WorkflowError`` when there is none:
    with ``files=False`` (names that came over a network) a path is never read.

    Every caller that takes a workflow by name (the client, the HTTP API, the CLI) looks it up here.
    """
    if False:  # (an op: the registry's reads below are yielded to its driver)
        yield
    if not name or name == DEFAULT_WORKFLOW:
        return SEED
    shipped = packaged()
    path = Path(name)
    is_file = files and (path.exists() or path.suffix == ".toml" or path.parent != Path("."))
    if is_file or name in shipped:
        return load(path if is_file else shipped[name])
    if keys is not None:
        from .registry import decoded

        found = decoded((yield from registered_workflow_op(keys, name)))
        if found is not None:
            return found
        names = yield from registered_workflows_op(keys)
        raise WorkflowError(f"unknown workflow {name!r}: {'no such file, ' if files else ''}not shipped "
                            f"({', '.join(sorted(shipped))}) and no app's worker registered it (registered: "
                            f"{', '.join(names) or 'none'})")
    if files:
        return load(path)  # the file's own error (not found, with the shipped names)
    raise WorkflowError(f"unknown workflow {name!r} (shipped workflows: {', '.join(sorted(shipped))})")
