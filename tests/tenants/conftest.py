"""Fixtures of the tenant tests: a tenants file with two tenants and an admin, and its tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from baton.agents.tenants import hash_token


@dataclass(frozen=True)
class Tenants:
    """A tenants file and the plain tokens of its tenants (``acme``, ``globex``, admin ``ops``)."""

    path: Path
    tokens: dict[str, str]

    def headers(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[tenant]}"}


def write_tenants(path: Path, limits: dict[str, str] | None = None) -> Tenants:
    """A tenants file at ``path``; ``limits``: extra TOML lines per tenant."""
    tokens = {name: f"token-of-{name}-5b1e" for name in ("acme", "globex", "ops")}
    lines: list[str] = []
    for name, token in tokens.items():
        lines += [f"[tenants.{name}]", f'tokens = ["{hash_token(token)}"]']
        lines += ["admin = true"] if name == "ops" else []
        lines += [(limits or {}).get(name, ""), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return Tenants(path, tokens)


@pytest.fixture
def tenants(tmp_path: Path) -> Tenants:
    return write_tenants(tmp_path / "tenants.toml")
