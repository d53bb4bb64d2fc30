"""The seed notebook's chain (Alice plans, Bob researches, Eve summarizes) as a Python app.

Its outputs equal the TOML seed workflow's: each agent renders the notebook's prompt
(``ctx.prompt``: ``f"{role} agent named {name}. Task: {task}\\nMemory: {memory[-3:]}\\nResponse:"``),
and the handoff texts are the seed's. Run it with

    baton run --app examples.notebook_app:app "Explain the importance of supervised learning."
"""

from baton import App, Context

app = App("notebook")


async def respond(ctx: Context, task: str) -> str:
    return await ctx.generate(ctx.prompt(task))  # the notebook's Agent.run: prompt in, generated_text out


@app.role(agent="Alice", next="researcher", handoff="Research and elaborate: {output}")
async def planner(ctx: Context, task: str) -> str:
    return await respond(ctx, task)


@app.role(agent="Bob", next="summarizer", handoff="Summarize key points: {output}")
async def researcher(ctx: Context, task: str) -> str:
    return await respond(ctx, task)


@app.role(agent="Eve")
async def summarizer(ctx: Context, task: str) -> str:
    return await respond(ctx, task)
