"""The import graph of the installed ``baton`` package: no cycle, and every arrow points down.

Layers, top to bottom: the CLI (``baton.agents.cli`` and ``python -m baton``, an application of
the public face: ``baton runs`` lists runs with ``baton.Client``), the
public face (``import baton``: ``agents/client/``), the runtime and operations (``baton.agents``),
the broker (``baton.broker``), the wire format (``baton.protocol``). Every ``import`` counts,
those inside functions and under ``TYPE_CHECKING`` too: a reader following the imports must find
no circle.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

import baton

LOWER_TO_TOP = ("baton.protocol", "baton.broker", "baton.agents")


def _modules() -> dict[str, Path]:
    found = {"baton": Path(baton.__file__)}
    for info in pkgutil.walk_packages(baton.__path__, "baton."):
        spec = importlib.util.find_spec(info.name)
        assert spec is not None and spec.origin is not None, info.name
        found[info.name] = Path(spec.origin)
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The baton modules ``name`` imports (``from pkg import mod`` counts as ``pkg.mod`` when it is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                out.add(sub if sub in known else module)
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    """Module name to the baton modules it imports, over the installed package."""
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    """0 the wire format, 1 the broker, 2 the runtime, 3 the public face, 4 the CLI."""
    if module.startswith("baton.agents.cli") or module == "baton.__main__":  # ``python -m baton`` is the CLI
        return 4
    for rank, prefix in enumerate(LOWER_TO_TOP):
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return 3


def test_the_graph_is_read_from_the_installed_package() -> None:
    edges = graph()
    assert {"baton", "baton.client", "baton.agents.cli", "baton.broker.streams", "baton.protocol.codec"} <= set(edges)
    assert "baton.protocol.codec" in edges["baton.protocol"]


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_every_import_points_down() -> None:
    upward = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets if layer(b) > layer(a))
    assert upward == []


def test_the_checks_can_fail() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("baton.agents.runtime.worker") < layer("baton") < layer("baton.agents.cli.runs")
    assert layer("baton.protocol.codec") < layer("baton.broker") < layer("baton.agents.backpressure")


def absolute_inside(modules: dict[str, Path]) -> list[str]:
    """``from baton.<lower> import`` lines inside the lower layers, which should be relative.

    The folders map onto the namespace (agents/ is ``baton.agents``, broker/ ``baton.broker``,
    protocol/ ``baton.protocol``), so a relative import there names the file a reader opens. The
    public face (``baton``, in agents/client/) sits above them in the namespace but beside them on
    disk: its imports of the layers below, and the CLI's of the public face, stay absolute.
    """
    found = []
    for name, path in modules.items():
        if not name.startswith(LOWER_TO_TOP):  # the public face's folder, and ``python -m baton`` in it
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith(LOWER_TO_TOP):
                found.append(f"{name}:{node.lineno} from {node.module}")
    return found


def test_imports_inside_the_package_are_relative(tmp_path: Path) -> None:
    assert absolute_inside(_modules()) == []
    # the check can fail
    odd = tmp_path / "odd.py"
    odd.write_text("from baton.broker import Keys\nfrom .codec import decode\nfrom baton import Client\n")
    assert absolute_inside({"baton.broker.odd": odd}) == ["baton.broker.odd:1 from baton.broker"]
