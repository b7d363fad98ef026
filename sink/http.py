"""The sink's HTTP port (SINK_HTTP_HOST/SINK_HTTP_PORT): /metrics and /health of a SinkService.

/health is SinkService.health(): 200 while batches get stored, 503 with a one-line reason once
PostgreSQL refused the batch in hand several times in a row (contracts.stage_http).
"""
from __future__ import annotations

from contracts.stage_http import StageHttpServer
from sink.consumer import SinkService


def sink_http_server(service: SinkService) -> StageHttpServer | None:
    """The server for ``service``'s settings (not started); None when the port is off."""
    s = service.settings
    if s.http_port is None:
        return None
    return StageHttpServer("sink", s.http_host, s.http_port, service.metrics.render,
                           service.health)
