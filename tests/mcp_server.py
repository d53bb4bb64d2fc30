"""A real MCP tool server written with the official ``mcp`` SDK, for the MCP tests.

Two tools: ``add`` (two integers) and ``lookup_order`` (an order's status; an unknown order is a
tool error). Run it over stdio or Streamable HTTP::

    python tests/mcp_server.py stdio
    python tests/mcp_server.py http --port 8123        # http://127.0.0.1:8123/mcp

With ``MCP_TEST_CALLS=FILE`` every tool call appends one line (the tool's name and the server's
process id) to ``FILE``, so a test can count the calls a server received across processes.

:func:`stdio_spec` and :func:`start_http` give a test (or another helper's fixture) this server
over either transport: ``tests/conftest.py`` wraps them as fixtures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ORDERS = {42: "shipped", 7: "lost in transit"}


def _count(tool: str) -> None:
    path = os.environ.get("MCP_TEST_CALLS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{tool} {os.getpid()}\n")


def build() -> Any:
    """The server: an ``MCPServer`` (the SDK's FastMCP) with the two tools."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("baton-test-tools")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        _count("add")
        return a + b

    @server.tool()
    def lookup_order(order: int) -> str:
        """The shipping status of an order."""
        _count("lookup_order")
        if order not in ORDERS:
            raise ToolError(f"no order {order}")
        return f"order {order}: {ORDERS[order]}"

    return server


SCRIPT = Path(__file__).resolve()


def stdio_spec(calls: Path | None = None, **kwargs: object) -> dict[str, object]:
    """The ``[mcp.NAME]`` settings (as a dict) that start this server over stdio."""
    env = {"MCP_TEST_CALLS": str(calls)} if calls is not None else {}
    return {"command": sys.executable, "args": [str(SCRIPT), "stdio"], "env": env, **kwargs}


@contextmanager
def start_http(calls: Path | None = None, timeout: float = 60, port: int | None = None) -> Iterator[str]:
    """This server over Streamable HTTP on a loopback port (default: a free one); yields its URL, then stops it."""
    import time

    import httpx

    from baton.broker import free_port

    port = port or free_port()
    env = {**os.environ, **({"MCP_TEST_CALLS": str(calls)} if calls is not None else {})}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "http", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the MCP test server exited with {proc.returncode}")
            try:
                httpx.get(url, timeout=1)  # any HTTP answer means it listens
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the MCP test server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description="baton's MCP test server")
    parser.add_argument("transport", choices=["stdio", "http"])
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args()
    server = build()
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
