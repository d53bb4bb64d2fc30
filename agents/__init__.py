"""Baton's agents: roles and workflows, the worker loop, model backends, tools and the CLI."""
