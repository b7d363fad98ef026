"""The delivery steps of everything that stores tagged tweets: the sink service and replay.

One copy of each: write a batch with a record-by-record fallback, produce dead letters, commit
offsets, and retry an outage with backoff. The order they are called in is the contract
(PostgreSQL, then dead letters, then offsets), so a crash anywhere replays a batch that then
changes nothing.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

from sqlalchemy.exc import DBAPIError, StatementError

from contracts.messages import DeadLetter, KafkaRecord, TaggedTweet
from sink.store import TrendStore
from sink.writer import WriteResult

log = logging.getLogger(__name__)

T = TypeVar("T")


class Stopped(Exception):
    """stop() was called while a step waited to retry: the batch in hand stays uncommitted."""


class GaveUp(Exception):
    """A step failed on every attempt its :class:`Backoff` allows; ``__cause__`` is the last error."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff between ``initial_s`` and ``max_s``; ``attempts=None`` retries forever."""

    initial_s: float
    max_s: float
    attempts: int | None = None

    def run(self, action: Callable[[], T], errors: tuple[type[BaseException], ...], what: str,
            stop: threading.Event, on_failure: Callable[[BaseException], None] | None = None) -> T:
        delay = self.initial_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return action()
            except errors as exc:
                if on_failure is not None:
                    on_failure(exc)
                if self.attempts is not None and attempt >= self.attempts:
                    raise GaveUp(f"{what} failed {attempt} times: {describe(exc)}") from exc
                log.warning("%s failed (%s); retrying in %.1fs, offsets not committed",
                            what, describe(exc), delay)
            if stop.wait(delay):
                raise Stopped()
            delay = min(delay * 2, self.max_s)


def describe(exc: BaseException) -> str:
    """The first line of a driver or client error, without SQLAlchemy's wrapping."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


# SQLSTATE classes that name the record, not the server: data exceptions (22: bad encoding, value
# out of range), integrity violations (23) and program limits (54: an index row too large).
_RECORD_SQLSTATE_CLASSES = ("22", "23", "54")


def is_record_error(exc: BaseException) -> bool:
    """True when ``exc`` is about the records written (retrying can never succeed), False when it
    is an outage. The driver refuses a NUL with a plain ValueError before sending anything, and
    bucket arithmetic on a timestamp out of range raises OverflowError."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return False
        code = getattr(exc.orig, "pgcode", None) or ""
        return code[:2] in _RECORD_SQLSTATE_CLASSES
    if isinstance(exc, StatementError):  # a bind parameter the driver refused to encode
        return isinstance(exc.orig, (ValueError, OverflowError))
    return isinstance(exc, (ValueError, OverflowError))


_WRITE_ERRORS = (DBAPIError, StatementError, ValueError, OverflowError)


def write_with_fallback(store: TrendStore, records: Sequence[tuple[KafkaRecord, TaggedTweet]],
                        stage: str) -> tuple[WriteResult, list[DeadLetter]]:
    """Writes the batch in one transaction; a record PostgreSQL refuses (see
    :func:`is_record_error`) would fail it on every try, so the batch is then written record by
    record and only the records that fail on their own become dead letters. Outages propagate
    for the caller's :class:`Backoff`."""
    try:
        return store.write([rec for _, rec in records]), []
    except _WRITE_ERRORS as exc:
        if not is_record_error(exc):
            raise
        log.warning("batch rejected by PostgreSQL (%s); writing records one by one", describe(exc))
    result, rejected = WriteResult(), []
    for msg, rec in records:
        try:
            result = result.merge(store.write([rec]))
        except _WRITE_ERRORS as one:
            if not is_record_error(one):
                raise
            rejected.append(DeadLetter.for_record(stage, f"rejected by PostgreSQL: {describe(one)}", msg))
    return result, rejected


class DeadLetterProducer:
    """Produces dead letters to one topic and waits for the broker's acknowledgement."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._producer: Any = None
        # The sink's writer threads share one producer (kafka-python's is thread-safe).
        self._creating = threading.Lock()

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Raises KafkaError when any letter is not acknowledged; a re-send after a partial
        failure can duplicate a dead letter, which is harmless (losing one is not)."""
        from kafka import KafkaProducer

        if not letters:
            return
        with self._creating:
            if self._producer is None:
                self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                               retries=5, linger_ms=5)
        futures = [self._producer.send(self.topic, key=(d.source or "").encode("utf-8"),
                                       value=d.model_dump_json().encode("utf-8")) for d in letters]
        self._producer.flush()
        for future in futures:
            future.get(timeout=30)

    def close(self) -> None:
        close_clients(self._producer)
        self._producer = None


def next_offsets(records: Sequence[KafkaRecord]) -> dict[Any, int]:
    """Per partition, the offset after the last record of the batch: what a commit stores."""
    from kafka.structs import TopicPartition

    last: dict[TopicPartition, int] = {}
    for msg in records:
        tp = TopicPartition(msg.topic, msg.partition)
        last[tp] = max(last.get(tp, -1), msg.offset)
    return {tp: offset + 1 for tp, offset in last.items()}


def commit_offsets(consumer: Any, offsets: Mapping[Any, int]) -> bool:
    """Commits ``offsets`` for ``consumer``'s group; False (logged) when the broker refused.

    A refused commit is harmless here: the batch is stored, and re-reading it changes nothing.
    """
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    if not offsets:
        return True
    try:
        consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})
        return True
    except KafkaError as exc:
        log.warning("offset commit failed (%s); the records will be re-read harmlessly", exc)
        return False


def close_clients(*clients: object) -> None:
    """Close Kafka clients, best effort: the broker may be gone already."""
    for client in clients:
        if client is not None:
            try:
                client.close()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - closing must not hide the real error
                log.debug("close failed", exc_info=True)
