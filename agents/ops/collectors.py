"""The deployment's backlog as Prometheus gauges, for autoscalers (KEDA, a Prometheus adapter).

``SnapshotCollector`` turns a monitor ``Snapshot`` into per-role gauges (lag, pending, length,
consumers, throughput), labelled with the workflow and the role, and per-model usage against the
shared rate limits, labelled with the model; the dashboard serves it at ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .monitor import Snapshot

__all__ = ["LABELS", "SnapshotCollector"]

LABELS = ["workflow", "role"]
"""The labels of every per-role gauge."""


class SnapshotCollector(Collector):
    """Per-role backlog gauges from the latest monitor snapshot (``latest`` returns it)."""

    def __init__(self, latest: Callable[[], Snapshot | None]) -> None:
        self.latest = latest

    def collect(self) -> Iterator[Any]:
        """Yield gauges for the newest snapshot (nothing before the first sample)."""
        snap = self.latest()
        if snap is None:
            return
        gauges = {
            "lag": GaugeMetricFamily("baton_stream_lag", "Entries in the role's stream never delivered to its group",
                                     labels=LABELS),
            "pending": GaugeMetricFamily("baton_stream_pending", "Entries delivered but not acknowledged",
                                         labels=LABELS),
            "length": GaugeMetricFamily("baton_stream_length", "Entries in the role's stream", labels=LABELS),
            "consumers": GaugeMetricFamily("baton_role_consumers", "Consumers of the role with a live heartbeat",
                                           labels=LABELS),
            "throughput": GaugeMetricFamily("baton_role_throughput", "Messages acknowledged per second",
                                            labels=LABELS),
        }
        for fig in snap.roles:
            names = [fig.workflow, fig.role]
            gauges["lag"].add_metric(names, fig.lag)
            gauges["pending"].add_metric(names, fig.pending)
            gauges["length"].add_metric(names, fig.length)
            gauges["consumers"].add_metric(names, sum(c.alive for c in fig.consumers))
            gauges["throughput"].add_metric(names, fig.throughput or 0.0)
        yield from gauges.values()
        dead = GaugeMetricFamily("baton_dead_letters", "Entries in the dead-letter streams")
        dead.add_metric([], snap.dead_letters)
        yield dead
        runs = GaugeMetricFamily("baton_runs", "Runs by status (newest 10,000 per partition)", labels=["status"])
        for status, n in sorted(snap.runs.items()):
            runs.add_metric([status], n)
        yield runs
        yield from _rate_limits(snap)


def _rate_limits(snap: Snapshot) -> Iterator[Any]:
    """Per model: requests and tokens in the last minute, and the limits (0 = unlimited)."""
    families = {
        "requests": GaugeMetricFamily("baton_model_requests_last_minute", "Prompts sent to the model in the last "
                                      "minute, all workers", labels=["model"]),
        "tokens": GaugeMetricFamily("baton_model_tokens_last_minute", "Tokens of the model's calls in the last minute "
                                    "(reserved, settled to the real count)", labels=["model"]),
        "rpm": GaugeMetricFamily("baton_model_rpm_limit", "The model's shared requests-per-minute limit (0: none)",
                                 labels=["model"]),
        "tpm": GaugeMetricFamily("baton_model_tpm_limit", "The model's shared tokens-per-minute limit (0: none)",
                                 labels=["model"]),
    }
    for m in snap.rate_limits:
        families["requests"].add_metric([m.model], m.requests)
        families["tokens"].add_metric([m.model], m.tokens)
        families["rpm"].add_metric([m.model], m.rpm)
        families["tpm"].add_metric([m.model], m.tpm)
    yield from families.values()
