"""Every knob of the tagger worker (the Faust agent), read from the environment in one place."""
from __future__ import annotations

from pydantic import Field

from contracts.settings import StageSettings


class AgentSettings(StageSettings):
    # The Faust app id, which is also the consumer group: workers with the same id share partitions.
    group: str = Field("tweetner-tagger", validation_alias="TAGGER_GROUP", min_length=1)
    # Micro-batches: the model runs once per batch of at most batch_size tweets, or on what
    # arrived within batch_within_s of the first one.
    batch_size: int = Field(64, validation_alias="TAGGER_BATCH_SIZE", gt=0)
    batch_within_s: float = Field(0.2, validation_alias="TAGGER_BATCH_WITHIN_S", gt=0)
    # Batches whose outputs may still await the broker's acks while the next one is tagged: the
    # model does not sit idle for a produce round trip. 1 = strictly one batch at a time.
    batches_in_flight: int = Field(2, validation_alias="TAGGER_BATCHES_IN_FLIGHT", ge=1, le=16)
    # Model: a directory (None = the shipped default model), device ("cpu", "cuda", None = best
    # available) and precision ("fp32", "fp16", "bf16", None = the device's default).
    model_dir: str | None = Field(None, validation_alias="TAGGER_MODEL_DIR")
    device: str | None = Field(None, validation_alias="TAGGER_DEVICE")
    precision: str | None = Field(None, validation_alias="TAGGER_PRECISION")
    # "module:callable" returning an object with predict/model_name/model_version; lets tests
    # and other deployments plug a model in without touching the agent. The default reads the
    # model directory's config and picks the backend (tagger.loading).
    model_factory: str = Field("tagger.loading:load_tagger", validation_alias="TAGGER_MODEL_FACTORY",
                               pattern=r"^[\w.]+:[\w.]+$")
    # CPU threads for torch (None = torch's default, one per core). On a CPU shared with the
    # broker and the sink, fewer threads than cores avoids oversubscription stalls.
    torch_threads: int | None = Field(None, validation_alias="TAGGER_TORCH_THREADS", gt=0)
    web_host: str = Field("127.0.0.1", validation_alias="TAGGER_WEB_HOST")
    web_port: int = Field(6066, validation_alias="TAGGER_WEB_PORT", ge=0, le=65535)
    data_dir: str = Field(".state/tagger", validation_alias="TAGGER_DATA_DIR")
    # Short group timeouts so a dead worker's partitions move quickly (and joins are quick on
    # Tansu); the heartbeat runs on the event loop, which the model never blocks (it runs in a
    # thread), so a long batch cannot make the worker look dead.
    heartbeat_interval_s: float = Field(1.0, validation_alias="TAGGER_HEARTBEAT_S", gt=0)
    session_timeout_s: float = Field(10.0, validation_alias="TAGGER_SESSION_TIMEOUT_S", gt=0)
    rebalance_timeout_s: float = Field(20.0, validation_alias="TAGGER_REBALANCE_TIMEOUT_S", gt=0)
    # The longest a batch may legitimately take (a large batch on a slow CPU). Faust warns about a
    # "livelock" when offsets do not move for this long and kafka evicts a consumer that does not
    # poll for max_poll_interval; both are set from it so slow batches are never mistaken for hangs.
    max_batch_seconds: float = Field(600.0, validation_alias="TAGGER_MAX_BATCH_SECONDS", gt=0)
    commit_interval_s: float = Field(1.0, validation_alias="TAGGER_COMMIT_INTERVAL_S", gt=0)
    # How long a fetch may wait on the broker for data (Faust's own 1500 ms adds latency on
    # brokers that do not answer on the first byte), and how long the producer lingers to batch.
    fetch_max_wait_ms: int = Field(100, validation_alias="TAGGER_FETCH_MAX_WAIT_MS", ge=0)
    producer_linger_ms: float = Field(5.0, validation_alias="TAGGER_PRODUCER_LINGER_MS", ge=0)
    # Bytes per produce request and partition: a batch's outputs leave in a few large requests
    # rather than many 16 KiB ones (Faust's default), each of which costs the broker a round.
    producer_batch_bytes: int = Field(262_144, validation_alias="TAGGER_PRODUCER_BATCH_BYTES", gt=0)
    # Sends of one batch are retried this long (with backoff) before the worker gives up and exits
    # without acking the batch, so that a restarted worker re-processes it.
    send_timeout_s: float = Field(300.0, validation_alias="TAGGER_SEND_TIMEOUT_S", gt=0)
    # How often the broker's partition counts are compared with the worker's (a metadata request).
    topic_watch_interval_s: float = Field(10.0, validation_alias="TAGGER_TOPIC_WATCH_INTERVAL_S", gt=0)
