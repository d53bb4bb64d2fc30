"""An MCP tool server (the official ``mcp`` SDK) with the order desk's tools, for ``support_app``.

    python -m examples.orders_mcp            # stdio, as the support app starts it
"""

from __future__ import annotations

ORDERS = {42: "shipped on Monday", 7: "lost in transit", 1234: "delivered"}


def build():  # type: ignore[no-untyped-def]
    """The server, with one tool: ``lookup_order``."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("orders")

    @server.tool()
    def lookup_order(order: int) -> str:
        """The shipping status of an order."""
        if order not in ORDERS:
            raise ToolError(f"no order {order}")
        return f"order {order}: {ORDERS[order]}"

    return server


if __name__ == "__main__":
    build().run("stdio")
