"""The ``baton`` command line: run the seed workflow, run workers, submit and inspect runs.

Errors a user can fix are printed as one line on stderr with a non-zero exit code, never a
traceback: ``CliError`` for the CLI's own checks, plus the library's named errors.
"""

from __future__ import annotations

import sys

import typer

try:  # typer >= 0.2x vendors click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer with click as a dependency
    from click.exceptions import ClickException, UsageError  # type: ignore[assignment]

from ...broker import AuthenticationFailed, BrokerConnectionError, BrokerTimeout, BrokerUnavailable, CommandRefused
from ...broker.backpressure import SubmitRefused
from ...broker.replication import ReplicasBehind
from ...broker.scripts import LibraryMissing
from ..backends.local import LocalModelsMissing
from ..settings import SettingsError
from ..workflow.spec import WorkflowError
from . import dashboard as _dashboard  # noqa: E402,F401  (registers commands)
from . import dlq as _dlq  # noqa: E402,F401
from . import events as _events  # noqa: E402,F401
from . import inspect as _inspect  # noqa: E402,F401
from . import mcp_stdio as _mcp_stdio  # noqa: E402,F401
from . import monitor as _monitor  # noqa: E402,F401
from . import review as _review  # noqa: E402,F401
from . import run as _run  # noqa: E402,F401
from . import runs as _runs  # noqa: E402,F401
from . import schedule as _schedule  # noqa: E402,F401
from . import tenants as _tenants  # noqa: E402,F401
from . import threads as _threads  # noqa: E402,F401
from . import timers as _timers  # noqa: E402,F401
from . import webhooks as _webhooks  # noqa: E402,F401
from . import worker as _worker  # noqa: E402,F401
from . import workflow as _workflow  # noqa: E402,F401
from .common import CliError, app

__all__ = ["CliError", "app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``baton`` script; returns the exit code."""
    try:
        rv = app(args=argv, prog_name="baton", standalone_mode=False)
    except UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        return _fail(f"{exc.format_message()}{hint}", 2)
    except (typer.Abort, KeyboardInterrupt):
        return _fail("interrupted", 130)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (CliError, SettingsError, WorkflowError, BrokerUnavailable, SubmitRefused, ReplicasBehind, LibraryMissing,
            LocalModelsMissing) as exc:
        return _fail(str(exc), getattr(exc, "code", 1))
    except AuthenticationFailed as exc:
        return _fail(f"Redis refused the credentials in REDIS_URL: {exc}", 1)
    except (BrokerConnectionError, BrokerTimeout) as exc:
        return _fail(f"cannot reach Redis ({exc}); check REDIS_URL", 1)
    except CommandRefused as exc:
        return _fail(f"Redis error: {exc}", 1)
    except ClickException as exc:
        return _fail(exc.format_message(), exc.exit_code)
    return int(rv or 0)


def _fail(message: str, code: int) -> int:
    print(f"baton: error: {message}", file=sys.stderr)
    return code

