"""Shared pieces of the CLI: the Typer app, settings, connections, the workflow in use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

from ...broker import Keys, Redis, connect, ping
from ..settings import Settings
from ..workflow.spec import Workflow

__all__ = ["AppOption", "CliError", "app", "app_or_named", "connect_checked", "err", "out", "settings", "utc_time",
           "visible"]

_BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
_VISIBLE = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")
            for c in (*range(0x20), 0x7F, *range(0x80, 0xA0), *_BIDI) if c not in (0x09, 0x0A)}


def visible(text: str) -> str:
    """``text`` (a model's or a task's, so untrusted) with its control characters shown as escapes
    (``\\x1b``, ``\\x07``, ``\\u202e``): printed to a terminal it cannot move the cursor, recolour,
    retitle, ring or reorder anything. Newlines and tabs stay."""
    return text.translate(_VISIBLE)


def utc_time(at: float) -> str:
    """``at`` (epoch seconds) as ``YYYY-MM-DD HH:MM:SS`` in UTC, as every CLI table shows a time."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")

app = typer.Typer(
    name="baton",
    help="A distributed multi-agent LLM runtime over Redis Streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


class CliError(RuntimeError):
    """An error the user can fix; printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def settings(**overrides: object) -> Settings:
    """Settings from the environment with command-line overrides."""
    return Settings.from_env(**overrides)


def connect_checked(s: Settings) -> tuple[Redis, Keys]:
    """Connect to ``s.redis_url`` and check it answers; return the client and key names."""
    client = connect(s.redis_url)
    ping(client, s.redis_url)
    return client, s.keys()


AppOption = Annotated[str | None, typer.Option(
    "--app", metavar="PKG.MODULE:APP", help="A workflow written in Python: the baton.App this names.")]


def app_or_named(workflow: str | None, app_ref: str | None, *, client: Redis | None = None,
                 keys: Keys | None = None) -> Workflow:
    """The workflow of the app ``app_ref`` names (``pkg.module:app``, handlers checked), else the one
    ``workflow`` names (``loader.named``; with ``client``, apps' registered workflows too)."""
    if app_ref:
        if workflow:
            raise CliError("give --app or --workflow, not both", 2)
        from ..app.loader import app_workflow  # imported lazily: imports the user's module

        return app_workflow(app_ref)
    from ..workflow.loader import named

    return named(workflow, client=client, keys=keys)
