"""Fetched records waiting for the tagging agent: the hand-over between Faust's fetcher and the
agent's batches, one list per fetch instead of one event per record (tagger/worker/transport.py).

Bounded, so a slow model holds the fetcher back (the consumer keeps heartbeating; records wait
in the broker, not in memory). Only touched from the event loop.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class RecordInbox:
    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self._records: deque[Any] = deque()
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._records)

    async def put(self, messages: list[Any]) -> None:
        """Waits for room (one fetch may go past ``max_records``), then adds ``messages``."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._records) < self.max_records)
            self._records.extend(messages)
            self._changed.notify_all()

    async def take(self, max_n: int, within_s: float) -> list[Any]:
        """The next batch: ``max_n`` records, or what arrived within ``within_s`` of the first."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._records))
            if len(self._records) < max_n:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: len(self._records) >= max_n), within_s)
                except asyncio.TimeoutError:
                    pass
            records = self._records
            n = min(max_n, len(records))
            batch = [records.popleft() for _ in range(n)]
            self._changed.notify_all()
            return batch

    def clear(self) -> None:
        """Drops every waiting record (a rebalance starts: they belong to the old assignment).
        A fetcher waiting for room is released by the same stop of the flow."""
        self._records.clear()
