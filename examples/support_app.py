"""Support triage as code: two Python tools, an MCP server's tools, and a chat model that picks them.

    baton worker --app examples.support_app:app --all-roles     # BATON_MODEL: an OpenAI-compatible URL
    baton submit --workflow support "Where is order 42? I want a refund, bought 12 days ago." --wait
"""

import sys
from typing import Literal

from baton import App, Context

app = App("support", mcp={"orders": {"command": sys.executable, "args": ["-m", "examples.orders_mcp"]}})


@app.tool
def refund_policy(days_since_purchase: int) -> str:
    """Whether a purchase can still be refunded."""
    return "refundable" if days_since_purchase <= 30 else "past the 30-day refund window"


@app.tool
def escalate(summary: str, urgency: Literal["low", "high"] = "low") -> str:
    """Open a ticket for a human agent."""
    return f"ticket opened ({urgency}): {summary[:60]}"


@app.role(next="answer", tools=[refund_policy, escalate, "orders.lookup_order"])
async def triage(ctx: Context, task: str) -> str:
    reply = await ctx.chat([{"role": "system", "content": "Triage the request. Use the tools."},
                            {"role": "user", "content": task}],
                           tools=[refund_policy, escalate, "orders.lookup_order"])
    ctx.shared["triage"] = reply.text
    ctx.emit({"tool_calls": len(reply.calls)})
    return f"Request: {task}\nFindings: {reply.text}"


@app.role()
async def answer(ctx: Context, task: str) -> str:
    reply = await ctx.chat(f"Write the customer a short answer.\n{task}")
    return reply.text
