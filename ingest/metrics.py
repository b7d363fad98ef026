"""Ingest's Prometheus metrics and HTTP port (INGEST_HTTP_HOST/INGEST_HTTP_PORT).

Every stage's metrics (contracts.metrics): ``tweets_in`` counts records read, ``tweets_out``
tweets produced, ``dead_letters{reason}`` records rejected; ``batch_latency_seconds`` is the
time a flush waits for the broker to acknowledge what was sent. /health is 503 once the broker
failed to acknowledge a record (the run then ends with that error).
"""
from __future__ import annotations

from typing import Any, Callable

from contracts.metrics import StageMetrics
from contracts.stage_http import StageHttpServer


class IngestMetrics(StageMetrics):
    def __init__(self, problem: Callable[[], str | None]) -> None:
        super().__init__("ingest", problem=problem)


def ingest_http_server(service: Any) -> StageHttpServer | None:
    """The HTTP server of an IngestService (not started); None when INGEST_HTTP_PORT is unset."""
    s = service.settings
    if s.http_port is None:
        return None
    return StageHttpServer("ingest", s.http_host, s.http_port, service.metrics.render,
                           service.health)
