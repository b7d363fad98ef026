"""The API server's knobs, read from the environment like every stage's (contracts.settings)."""
from __future__ import annotations

from pydantic import Field

from contracts.settings import StageSettings


class ApiSettings(StageSettings):
    host: str = Field("127.0.0.1", validation_alias="TWEETNER_API_HOST", min_length=1)
    # 0 picks a free port (tests); `tweetner up` falls back to a free one when this is taken.
    port: int = Field(8700, validation_alias="TWEETNER_API_PORT", ge=0, le=65535)
    # POST /tag limits: the model runs the whole request as one batch, so both bound its memory
    # and the time one request holds the model.
    max_batch: int = Field(64, validation_alias="TWEETNER_API_MAX_BATCH", gt=0, le=10_000)
    max_text_chars: int = Field(2000, validation_alias="TWEETNER_API_MAX_TEXT_CHARS", gt=0)
    # The model for /tag: the tagger worker's variables, so one environment names one model.
    model_dir: str | None = Field(None, validation_alias="TAGGER_MODEL_DIR")
    device: str | None = Field(None, validation_alias="TAGGER_DEVICE")
    precision: str | None = Field(None, validation_alias="TAGGER_PRECISION")
    # Consumer groups whose lag the dashboard shows (the tagger's Faust app id, the sink's group).
    tagger_group: str = Field("tweetner-tagger", validation_alias="TAGGER_GROUP", min_length=1)
    sink_group: str = Field("tweetner-sink", validation_alias="SINK_GROUP", min_length=1)
    # Kafka figures are read at most this often; each dashboard refresh would otherwise cost a
    # round of broker requests.
    kafka_poll_s: float = Field(2.0, validation_alias="TWEETNER_API_KAFKA_POLL_S", gt=0)
    # The stored-tweets figures scan recent rows of the tweets table; at most this often.
    store_poll_s: float = Field(2.0, validation_alias="TWEETNER_API_STORE_POLL_S", ge=0)

    @property
    def max_body_bytes(self) -> int:
        """A /tag body can never need more: 4 bytes per character of JSON-escaped text and slack."""
        return self.max_batch * (self.max_text_chars * 12 + 16) + 1024
