"""An OpenAI Agents SDK ``Agent`` as a baton role: durable, budgeted, journaled.

    from agents import Agent, function_tool          # the OpenAI Agents SDK
    from baton import App
    from .openai_agents_sdk import agent_role

    app = App("support")
    triage = Agent(name="triage", instructions="...", tools=[lookup_order], handoffs=[billing])
    agent_role(app, triage, next="reply")            # the role "triage" runs the agent

- **Model calls** go through ``ctx.chat_once`` (:class:`BatonModel`, the SDK's ``Model``): the
  role's backend with baton's rate limits, budget, breaker, batching, token events and the call
  journal. A redelivered task replays the recorded answers, so the agent takes the same path
  without calling the model again.
- **Function tools** run as baton tools: each is registered in baton's tool registry under its
  name and the agent calls it through ``ctx.tool_outcome`` (allow-list, ``tool_call`` /
  ``tool_result`` events, the tool budget, the journal).
- **Handoffs** to an agent whose name is a role of the app become baton handoffs: the agent's
  ``transfer_to_<name>`` tool hands the task it names to that role (``ctx.handoff``) and ends the
  agent's turn. Handoffs to other agents stay inside the SDK's run (in this process, through the
  same model).

The SDK imports as ``agents``: baton installs only under ``baton``, so the two never collide.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from openai.types.chat import ChatCompletionMessage

from agents import Agent, FunctionTool, Handoff, ModelSettings, RunConfig, Runner, Usage
from agents.items import ModelResponse
from agents.models.chatcmpl_converter import Converter
from agents.models.interface import Model
from agents.tool_context import ToolContext as SdkToolContext

from ..app import App, Context
from ..tools.base import ToolContext
from ..tools.registry import get_tool, register
from .chat import chat_request, completion_message

__all__ = ["BatonModel", "SdkTool", "agent_handler", "agent_role"]

HANDOFF_ARGS = {"type": "object", "additionalProperties": False, "required": ["task"],
                "properties": {"task": {"type": "string", "description": "What the next role should do."}}}


class BatonModel(Model):
    """The SDK's ``Model`` over a handler's context: every call is ``ctx.chat_once`` (journaled)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def get_response(self, system_instructions: str | None, input: Any, model_settings: ModelSettings,
                           tools: list[Any], output_schema: Any, handoffs: list[Handoff[Any, Any]], tracing: Any,
                           **_: Any) -> ModelResponse:
        messages: list[Any] = list(Converter.items_to_messages(input))
        if system_instructions:
            messages.insert(0, {"role": "system", "content": system_instructions})
        offered = [Converter.tool_to_openai(t) for t in tools] + [Converter.convert_handoff_tool(h) for h in handoffs]
        choice = Converter.convert_tool_choice(model_settings.tool_choice)
        fmt = Converter.convert_response_format(output_schema)
        request = chat_request(messages, tools=offered, tool_choice=choice if isinstance(choice, str | dict) else None,
                               response_format=fmt if isinstance(fmt, dict) else None,
                               max_new_tokens=model_settings.max_tokens)
        result = await self.ctx.chat_once(request)
        message = ChatCompletionMessage.model_validate(completion_message(result))
        usage = Usage(requests=1, input_tokens=result.prompt_tokens, output_tokens=result.completion_tokens,
                      total_tokens=result.prompt_tokens + result.completion_tokens)
        return ModelResponse(output=Converter.message_to_output_items(message), usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a baton role runs its agent with Runner.run; tokens stream as the run's events")


class SdkTool:
    """An SDK ``FunctionTool`` as a baton tool (run in the tool runner's thread, in a fresh event loop)."""

    def __init__(self, tool: FunctionTool) -> None:
        self.tool = tool
        self.name = tool.name
        self.description = tool.description
        self.parameters = tool.params_json_schema

    def run(self, args: Mapping[str, Any], ctx: ToolContext) -> str:
        raw = json.dumps(dict(args))
        tool_ctx = SdkToolContext(context=None, tool_name=self.name, tool_call_id=f"baton-{ctx.run_id}",
                                  tool_arguments=raw)
        return str(asyncio.run(self.tool.on_invoke_tool(tool_ctx, raw)))


def _baton_tool(tool: FunctionTool, ctx: Context) -> FunctionTool:
    """``tool`` for the agent, called through baton (``ctx.tool_outcome``); errors go back to the model."""
    try:
        get_tool(tool.name)
    except Exception:  # noqa: BLE001 - not registered yet (UnknownTool): register it once per process
        register(SdkTool(tool))

    async def invoke(_: Any, raw: str) -> str:
        outcome = await ctx.tool_outcome(tool.name, json.loads(raw or "{}"))
        return outcome.error and f"error: {outcome.error}" or outcome.output

    return FunctionTool(name=tool.name, description=tool.description, params_json_schema=tool.params_json_schema,
                        on_invoke_tool=invoke, strict_json_schema=tool.strict_json_schema)


def _handoff_tool(handoff: Handoff[Any, Any], role: str, ctx: Context) -> FunctionTool:
    """A handoff to ``role`` as the tool the model calls: it sets the baton handoff."""

    async def invoke(_: Any, raw: str) -> str:
        task = str(json.loads(raw or "{}").get("task") or ctx.task.task)
        ctx.handoff(role, task)
        return f"handed off to {role}"

    return FunctionTool(name=handoff.tool_name, description=handoff.tool_description, params_json_schema=HANDOFF_ARGS,
                        on_invoke_tool=invoke, strict_json_schema=True)


def _for_baton(agent: Agent[Any], ctx: Context, roles: Callable[[], Mapping[str, Any]]) -> Agent[Any]:
    """A copy of ``agent`` whose tools and role handoffs go through baton (and so do its SDK handoffs')."""
    role_names = set(roles())
    tools: list[Any] = [_baton_tool(t, ctx) if isinstance(t, FunctionTool) else t for t in agent.tools]
    handoffs: list[Any] = []
    stops: list[str] = []
    for target in agent.handoffs:
        h = target if isinstance(target, Handoff) else None
        name = h.agent_name if h is not None else getattr(target, "name", "")
        if name in role_names:
            sdk = h or _default_handoff(target)
            tools.append(_handoff_tool(sdk, name, ctx))
            stops.append(sdk.tool_name)
        elif isinstance(target, Agent):
            handoffs.append(_for_baton(target, ctx, roles))
        else:
            handoffs.append(target)
    behavior: Any = {"stop_at_tool_names": stops} if stops else agent.tool_use_behavior
    return agent.clone(tools=tools, handoffs=handoffs, tool_use_behavior=behavior)


def _default_handoff(agent: Any) -> Handoff[Any, Any]:
    from agents import handoff

    return handoff(agent)


def agent_handler(agent: Agent[Any], *, roles: Callable[[], Mapping[str, Any]] = dict,
                  max_turns: int = 10) -> Callable[[Context, str], Any]:
    """A code-role handler that runs ``agent`` on the task: returns its final output (to ``next``),
    or the baton handoff it chose. ``roles``: the workflow's roles (handoff targets)."""

    async def handler(ctx: Context, task: str) -> Any:
        runnable = _for_baton(agent, ctx, roles)
        result = await Runner.run(runnable, task, max_turns=max_turns,
                                  run_config=RunConfig(model=BatonModel(ctx), tracing_disabled=True))
        return ctx.outcome if ctx.outcome is not None else str(result.final_output)

    handler.__name__ = handler.__qualname__ = f"agent_{agent.name}"
    return handler


def agent_role(app: App, agent: Agent[Any], *, name: str | None = None, max_turns: int = 10,
               **role_options: Any) -> Callable[[Context, str], Any]:
    """Declare ``agent`` a role of ``app`` (named ``name``, default the agent's name); ``role_options``
    are ``app.role``'s. Its handoffs to agents named like the app's roles are baton handoffs."""
    handler = agent_handler(agent, roles=lambda: app.roles, max_turns=max_turns)
    return app.role(name or agent.name, **role_options)(handler)
