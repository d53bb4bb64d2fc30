"""Agents written with other frameworks, run as baton roles: their model calls go through
``ctx.chat`` (journaled, budgeted, batched), their tools through baton's tools. One module per
framework; each imports its framework, which is installed separately."""
