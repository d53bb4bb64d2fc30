"""The runtime of one role: the worker loop and its stages, prompt rendering, routing, guards, logs, metrics."""
