"""Every knob of the tagger worker (the Faust agent), read from the environment in one place."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Mapping

from tweetner.topics import Topics, bootstrap_from_env


@dataclass(frozen=True)
class AgentSettings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    topics: Topics = Topics()
    # The Faust app id, which is also the consumer group: workers with the same id share partitions.
    group: str = "tweetner-tagger"
    # Micro-batches: the model runs once per batch of at most batch_size tweets, or on what
    # arrived within batch_within_s of the first one.
    batch_size: int = 64
    batch_within_s: float = 0.2
    # Model: a directory (None = the shipped default model), device ("cpu", "cuda", None = best
    # available) and precision ("fp32", "fp16", "bf16", None = the device's default).
    model_dir: str | None = None
    device: str | None = None
    precision: str | None = None
    # "module:callable" returning an object with predict/model_name/model_version; lets tests
    # and other deployments plug a model in without touching the agent.
    model_factory: str = "tagger.inference:NerTagger.load"
    # CPU threads for torch (None = torch's default, one per core). On a CPU shared with the
    # broker and the sink, fewer threads than cores avoids oversubscription stalls.
    torch_threads: int | None = None
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    data_dir: str = ".state/tagger"
    # Short group timeouts so a dead worker's partitions move quickly (and joins are quick on
    # Tansu); the heartbeat runs on the event loop, which the model never blocks (it runs in a
    # thread), so a long batch cannot make the worker look dead.
    heartbeat_interval_s: float = 1.0
    session_timeout_s: float = 10.0
    rebalance_timeout_s: float = 20.0
    # The longest a batch may legitimately take (a large batch on a slow CPU). Faust warns about a
    # "livelock" when offsets do not move for this long and kafka evicts a consumer that does not
    # poll for max_poll_interval; both are set from it so slow batches are never mistaken for hangs.
    max_batch_seconds: float = 600.0
    commit_interval_s: float = 1.0
    # How long a fetch may wait on the broker for data (Faust's own 1500 ms adds latency on
    # brokers that do not answer on the first byte), and how long the producer lingers to batch.
    fetch_max_wait_ms: int = 100
    producer_linger_ms: float = 5.0
    # Sends of one batch are retried this long (with backoff) before the worker gives up and exits
    # without acking the batch, so that a restarted worker re-processes it.
    send_timeout_s: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "AgentSettings":
        env = os.environ if env is None else env
        d = cls()
        values: dict[str, object] = dict(
            kafka_bootstrap=bootstrap_from_env(env),
            topics=Topics.from_env(env),
            group=env.get("TAGGER_GROUP", d.group),
            batch_size=int(env.get("TAGGER_BATCH_SIZE", d.batch_size)),
            batch_within_s=float(env.get("TAGGER_BATCH_WITHIN_S", d.batch_within_s)),
            model_dir=env.get("TAGGER_MODEL_DIR") or None,
            device=env.get("TAGGER_DEVICE") or None,
            precision=env.get("TAGGER_PRECISION") or None,
            model_factory=env.get("TAGGER_MODEL_FACTORY", d.model_factory),
            torch_threads=int(env["TAGGER_TORCH_THREADS"]) if env.get("TAGGER_TORCH_THREADS") else None,
            web_host=env.get("TAGGER_WEB_HOST", d.web_host),
            web_port=int(env.get("TAGGER_WEB_PORT", d.web_port)),
            data_dir=env.get("TAGGER_DATA_DIR", d.data_dir),
            heartbeat_interval_s=float(env.get("TAGGER_HEARTBEAT_S", d.heartbeat_interval_s)),
            session_timeout_s=float(env.get("TAGGER_SESSION_TIMEOUT_S", d.session_timeout_s)),
            rebalance_timeout_s=float(env.get("TAGGER_REBALANCE_TIMEOUT_S", d.rebalance_timeout_s)),
            max_batch_seconds=float(env.get("TAGGER_MAX_BATCH_SECONDS", d.max_batch_seconds)),
            commit_interval_s=float(env.get("TAGGER_COMMIT_INTERVAL_S", d.commit_interval_s)),
            fetch_max_wait_ms=int(env.get("TAGGER_FETCH_MAX_WAIT_MS", d.fetch_max_wait_ms)),
            producer_linger_ms=float(env.get("TAGGER_PRODUCER_LINGER_MS", d.producer_linger_ms)),
            send_timeout_s=float(env.get("TAGGER_SEND_TIMEOUT_S", d.send_timeout_s)),
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> "AgentSettings":
        return replace(self, **changes)  # type: ignore[arg-type]
