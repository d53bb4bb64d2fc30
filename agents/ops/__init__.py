"""Watching a deployment: the monitor, run traces, the web dashboard and its Prometheus collectors."""
