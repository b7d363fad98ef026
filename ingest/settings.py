"""Every knob of ingest, read from the environment in one place (see contracts.settings)."""
from __future__ import annotations

from pydantic import Field

from contracts.settings import StageSettings


class IngestSettings(StageSettings):
    # A line longer than this is rejected before parsing: no tweet is anywhere near it
    # (280 characters are at most ~1.1 KiB of UTF-8), so it is garbage or an attack.
    max_record_bytes: int = Field(16_384, validation_alias="INGEST_MAX_RECORD_BYTES", gt=0)
    # Twitter's API and the shared raw dumps HTML-escape text (&amp; &lt; &gt;); ingest undoes it
    # so that stored text, surface forms and character offsets are the characters people typed.
    unescape_html: bool = Field(True, validation_alias="INGEST_UNESCAPE_HTML")
    # How long a send may take before the broker counts as unreachable (the only fatal error).
    delivery_timeout_s: float = Field(60.0, validation_alias="INGEST_DELIVERY_TIMEOUT_S", gt=0)
    connect_timeout_s: float = Field(30.0, validation_alias="INGEST_CONNECT_TIMEOUT_S", gt=0)
    # Producer batching: a request per partition carries up to batch_bytes of records, sent
    # when full or linger_ms after its first record. Every request costs the broker and the
    # client a round of work whatever its size, so at thousands of tweets/s large batches are
    # what keeps ingest and the broker cheap; at low rates linger_ms bounds the added latency.
    linger_ms: int = Field(10, validation_alias="INGEST_LINGER_MS", ge=0)
    batch_bytes: int = Field(262_144, validation_alias="INGEST_BATCH_BYTES", gt=0)
    # --follow polls a growing file this often.
    follow_poll_s: float = Field(0.5, validation_alias="INGEST_FOLLOW_POLL_S", gt=0)
    # /metrics (Prometheus) and /health (ingest.metrics); unset = no HTTP port, 0 = any free port.
    http_host: str = Field("127.0.0.1", validation_alias="INGEST_HTTP_HOST")
    http_port: int | None = Field(None, validation_alias="INGEST_HTTP_PORT", ge=0, le=65535)
