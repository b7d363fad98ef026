"""PostgreSQL first, then Redis: the write path shared by the sink service and replay."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Sequence

from sqlalchemy import Engine

from sink.cache import TrendCache
from sink.writer import MentionWriter, WriteResult
from contracts.messages import TaggedTweet

if TYPE_CHECKING:
    from sink.settings import SinkSettings


class TrendStore:
    """Writes a batch (one PostgreSQL transaction) and then feeds its deltas to the Redis cache.

    Redis only ever sees deltas of committed transactions, and a Redis failure never fails the
    write (the cache resyncs itself later), so PostgreSQL is always the source of truth.
    """

    def __init__(self, engine: Engine, cache: TrendCache | None = None) -> None:
        self.writer = MentionWriter(engine)
        self.cache = cache
        # Writer threads commit and feed the cache one at a time: a cache resync by one of them
        # between another's commit and its deltas would count those deltas twice.
        self._commit_lock = threading.Lock()

    def write(self, records: Sequence[TaggedTweet]) -> WriteResult:
        """Safe to call from several threads at once (the sink's writers)."""
        return self.writer.write(records, commit=self._commit)

    def _commit(self, do_commit: Callable[[], None], result: WriteResult) -> None:
        with self._commit_lock:
            do_commit()
            if self.cache is not None and result.deltas:
                self.cache.apply(result)


def store_for(settings: "SinkSettings") -> TrendStore:
    """PostgreSQL plus the Redis cache, as the settings describe them."""
    from sink.db import make_engine

    engine = make_engine(settings)
    return TrendStore(engine, TrendCache(settings, engine))
