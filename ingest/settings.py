"""Every knob of ingest, read from the environment in one place."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Mapping

from tweetner.topics import Topics, bootstrap_from_env


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class IngestSettings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    topics: Topics = Topics()
    # A line longer than this is rejected before parsing: no tweet is anywhere near it
    # (280 characters are at most ~1.1 KiB of UTF-8), so it is garbage or an attack.
    max_record_bytes: int = 16_384
    # Twitter's API and the shared raw dumps HTML-escape text (&amp; &lt; &gt;); ingest undoes it
    # so that stored text, surface forms and character offsets are the characters people typed.
    unescape_html: bool = True
    # How long a send may take before the broker counts as unreachable (the only fatal error).
    delivery_timeout_s: float = 60.0
    connect_timeout_s: float = 30.0
    linger_ms: int = 5
    # --follow polls a growing file this often.
    follow_poll_s: float = 0.5

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "IngestSettings":
        env = os.environ if env is None else env
        d = cls()
        values: dict[str, object] = dict(
            kafka_bootstrap=bootstrap_from_env(env),
            topics=Topics.from_env(env),
            max_record_bytes=int(env.get("INGEST_MAX_RECORD_BYTES", d.max_record_bytes)),
            unescape_html=_bool(env.get("INGEST_UNESCAPE_HTML", "1")),
            delivery_timeout_s=float(env.get("INGEST_DELIVERY_TIMEOUT_S", d.delivery_timeout_s)),
            connect_timeout_s=float(env.get("INGEST_CONNECT_TIMEOUT_S", d.connect_timeout_s)),
            linger_ms=int(env.get("INGEST_LINGER_MS", d.linger_ms)),
            follow_poll_s=float(env.get("INGEST_FOLLOW_POLL_S", d.follow_poll_s)),
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> "IngestSettings":
        return replace(self, **changes)  # type: ignore[arg-type]
