"""The ingest service: validated tweets to the tweets topic, rejects to the dead-letter topic.

Delivery: acks=all with idempotence and unbounded retries inside ``delivery_timeout``; the run
waits for every send to be acknowledged before it reports success. A send that still fails means
the broker is unreachable, the one fatal error (:class:`BrokerUnavailable`).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from pydantic_core import PydanticSerializationError

from contracts.metrics import reason_kind
from ingest.metrics import IngestMetrics
from ingest.records import Rejection, parse_record
from ingest.settings import IngestSettings
from ingest.sources import RawRecord
from contracts.messages import DeadLetter, Tweet, utcnow

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """Kafka could not be reached or did not acknowledge records within the delivery timeout."""


@dataclass
class IngestSummary:
    read: int = 0
    produced: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.produced / self.seconds if self.seconds > 0 else 0.0
        text = (f"ingest: read {self.read}, produced {self.produced}, rejected {self.rejected} "
                f"in {self.seconds:.1f}s ({rate:.0f} tweets/s)")
        if self.reasons:
            text += " [" + ", ".join(f"{k}: {v}" for k, v in sorted(self.reasons.items())) + "]"
        return text


class UnencodableTweet(ValueError):
    """A validated tweet that still cannot be written as UTF-8 JSON."""


def _wire(tweet: Tweet) -> bytes:
    try:
        return tweet.model_dump_json().encode("utf-8")
    except (PydanticSerializationError, UnicodeEncodeError) as exc:
        raise UnencodableTweet(str(exc).splitlines()[0]) from exc


class RatePacer:
    """Spaces sends to ``rate`` per second, catching up after stalls without bursting past it."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self._next = time.monotonic()

    def wait(self, stop: threading.Event | None) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        self._next = max(self._next + self.interval, now - 1.0)
        delay = self._next - now
        if delay > 0:
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)


class IngestService:
    """A kafka-python producer plus the bookkeeping of one or more ingest runs."""

    def __init__(self, settings: IngestSettings | None = None) -> None:
        self.settings = settings or IngestSettings.from_env()
        self._producer = None
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        self.summary = IngestSummary()
        # When a list, the id of every tweet sent is appended (`up` and the benchmark wait for
        # exactly these to reach PostgreSQL).
        self.produced_ids: list[str] | None = None
        self.metrics = IngestMetrics(problem=lambda: self.health()["reason"])

    def health(self) -> dict[str, str | None]:
        """``ok``, or ``unhealthy`` once the broker failed to acknowledge a record."""
        if self._failure is not None:
            return {"status": "unhealthy",
                    "reason": f"Kafka at {self.settings.kafka_bootstrap} did not acknowledge "
                              f"records: {self._failure}"}
        return {"status": "ok", "reason": None}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        from ingest.partitioner import KeyPartitioner

        s = self.settings
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=s.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                retries=2**31 - 1,
                max_in_flight_requests_per_connection=5,
                linger_ms=s.linger_ms,
                batch_size=s.batch_bytes,
                delivery_timeout_ms=int(s.delivery_timeout_s * 1000),
                # kafka-python wants delivery_timeout > linger + request_timeout.
                request_timeout_ms=min(30_000, int(s.delivery_timeout_s * 1000) - s.linger_ms - 1),
                max_block_ms=int(s.connect_timeout_s * 1000),
                client_id="tweetner-ingest",
                partitioner=KeyPartitioner(),
            )
            # Fails fast (within connect_timeout) when the broker is not there at all.
            self._producer.partitions_for(s.topics.tweets)
        except KafkaError as exc:
            self._close_quietly()
            raise BrokerUnavailable(
                f"Kafka at {s.kafka_bootstrap} is unreachable: {exc}. "
                "Start it (tweetner up) or set KAFKA_BOOTSTRAP.") from exc

    def stop(self) -> None:
        if self._producer is not None:
            try:
                self.flush()
            finally:
                self._close_quietly()

    def _close_quietly(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=5)
            except Exception:  # noqa: BLE001 - closing must not hide the real error
                log.debug("producer close failed", exc_info=True)

    # -- producing -------------------------------------------------------------------------
    def _on_error(self, exc: BaseException) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = exc

    def _check(self) -> None:
        if self._failure is not None:
            raise BrokerUnavailable(
                f"Kafka at {self.settings.kafka_bootstrap} did not acknowledge records: "
                f"{self._failure}") from self._failure

    def send_tweet(self, tweet: Tweet) -> None:
        self._send(self.settings.topics.tweets, tweet.id.encode("utf-8"), _wire(tweet))
        self.summary.produced += 1
        self.metrics.tweets_out.inc()
        if self.produced_ids is not None:
            self.produced_ids.append(tweet.id)

    def send_dead_letter(self, raw: RawRecord, reason: str) -> None:
        letter = DeadLetter.for_payload("ingest", reason, raw.data, source=raw.source,
                                        position=raw.line)
        self._send(self.settings.topics.deadletter, raw.position.encode("utf-8"),
                   letter.model_dump_json().encode("utf-8"))
        self.summary.rejected += 1
        self.metrics.dead_lettered([reason])
        kind = reason_kind(reason)  # the summary groups reasons as the metrics do
        self.summary.reasons[kind] = self.summary.reasons.get(kind, 0) + 1
        log.debug("rejected %s: %s", raw.position, reason)

    def _send_or_reject(self, raw: RawRecord, tweet: Tweet) -> None:
        # Validation refuses what cannot be encoded; this keeps a gap in it to one dead letter
        # instead of an exit that leaves the rest of the file unsent.
        try:
            self.send_tweet(tweet)
        except UnencodableTweet as exc:
            self.send_dead_letter(raw, f"unencodable: {exc}")

    def _send(self, topic: str, key: bytes, value: bytes) -> None:
        from kafka.errors import KafkaError

        self._check()
        if self._producer is None:
            raise RuntimeError("IngestService.start() was not called")
        try:
            future = self._producer.send(topic, key=key, value=value)
        except KafkaError as exc:  # metadata unavailable for max_block_ms
            self._on_error(exc)
            self._check()
            raise
        future.add_errback(self._on_error)

    def flush(self) -> None:
        """Block until every record sent so far is acknowledged (or raise BrokerUnavailable)."""
        from kafka.errors import KafkaError

        if self._producer is not None:
            started = time.perf_counter()
            try:
                self._producer.flush(timeout=self.settings.delivery_timeout_s + 5)
            except KafkaError as exc:
                self._on_error(exc)
            self.metrics.batch_latency.observe(time.perf_counter() - started)
        self._check()

    def run(self, records: Iterable[RawRecord], *, rate: float | None = None,
            limit: int | None = None, stop: threading.Event | None = None,
            on_record: Callable[[IngestSummary], None] | None = None) -> IngestSummary:
        """Validate and produce ``records`` until exhausted, ``limit`` tweets produced or ``stop``."""
        s = self.settings
        pacer = RatePacer(rate)
        started = time.monotonic()
        try:
            for raw in records:
                if stop is not None and stop.is_set():
                    break
                self.summary.read += 1
                self.metrics.tweets_in.inc()
                result = parse_record(raw, max_bytes=s.max_record_bytes,
                                      unescape_html=s.unescape_html)
                if isinstance(result, Rejection):
                    self.send_dead_letter(raw, result.reason)
                else:
                    pacer.wait(stop)
                    self._send_or_reject(raw, result)
                if on_record is not None:
                    on_record(self.summary)
                if limit is not None and self.summary.produced >= limit:
                    break
            self.flush()
        finally:
            self.summary.seconds += time.monotonic() - started
        return self.summary

    def produce_tweets(self, tweets: Iterable[Tweet], *, rate: float | None = None,
                       limit: int | None = None, stop: threading.Event | None = None) -> IngestSummary:
        """Already-valid tweets (the synthetic stream); same delivery guarantees as :meth:`run`."""
        pacer = RatePacer(rate)
        started = time.monotonic()
        try:
            for tweet in tweets:
                if (stop is not None and stop.is_set()) or (limit is not None and self.summary.produced >= limit):
                    break
                pacer.wait(stop)
                self.summary.read += 1
                self.metrics.tweets_in.inc()
                # ingested_at is the produce time the pipeline latency is measured from.
                self.send_tweet(tweet.model_copy(update={"ingested_at": utcnow()}))
            self.flush()
        finally:
            self.summary.seconds += time.monotonic() - started
        return self.summary
