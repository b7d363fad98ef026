"""Faust's aiokafka transport with two changes for the tagger.

* Stale acks never move the committed offset. After a rebalance Faust skips (does not deliver)
  events fetched in the previous consumer generation, but still *acks* them; if the partition
  came back to the same worker, those acks could let the next commit jump over events nobody
  processed. Here an ack from an older generation is dropped instead: the partition is re-read
  from its committed offset, so the worst case is a re-tagged batch (harmless, the sink is
  idempotent), never a lost one.
* Faust hard-codes ``fetch_max_wait_ms=1500`` for the worker's consumer. A broker that holds a
fetch until that wait expires instead of answering on the first byte (Tansu does, partly) then
adds up to 1.5 s per hop, which is most of the pipeline's latency at moderate rates. The value is
kept on the aiokafka consumer before it starts its fetcher, so overriding it there is enough.
* Records reach the agent in bulk. Faust's fetcher hands every record to the conductor on its
  own (``wait_first`` of the callback and the flow's suspension: two tasks per record), and the
  stream wraps each in an event: together most of the worker's CPU with a cheap model. When the
  app has an :class:`~tagger.worker.inbox.RecordInbox`, the fetcher puts each fetch's messages
  there as one list instead, with Faust's own read-offset and gap bookkeeping, and the agent
  takes batches from it (tagger/worker/app.py). Stopping the flow (a rebalance starts) empties
  the inbox, as Faust clears its stream buffers, so no record of the old assignment starts.
"""
from __future__ import annotations

import asyncio
from typing import Any, Iterable, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from tagger.worker.inbox import RecordInbox


def make_transport(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        def ack(self, message: Any) -> bool:
            generation = getattr(message, "generation_id", None)
            if generation is not None and generation != self.app.consumer_generation_id:
                message.acked = True
                self._unacked_messages.discard(message)
                return False
            return super().ack(message)

        def track_batch(self, messages: Iterable[Any]) -> None:
            """The batch the agent starts: a rebalance or shutdown waits for these to be acked
            (``stream_wait_empty``); records still in the inbox are dropped instead."""
            self._unacked_messages.update(messages)

        def stop_flow(self) -> None:
            super().stop_flow()
            inbox = cast(TaggerApp, self.app).inbox
            if inbox is not None:
                inbox.clear()

        async def _drain_messages(self, fetcher: Any) -> None:
            inbox = cast(TaggerApp, self.app).inbox
            if inbox is None:
                await super()._drain_messages(fetcher)
                return
            try:
                await self._drain_into(inbox, fetcher)
            except self.consumer_stopped_errors:
                if self.transport.app.should_stop:
                    return
                raise
            except asyncio.CancelledError:
                if self.transport.app.should_stop:
                    return
                raise

        async def _drain_into(self, inbox: RecordInbox, fetcher: Any) -> None:
            """Faust's ``_drain_messages`` with one hand-over per fetch instead of per record."""
            consumer_stopped = self._stopped.is_set
            fetcher_stopped = fetcher._stopped.is_set
            read_offset = self._read_offset
            acks_enabled_for = self.app.topics.acks_enabled_for
            while not (consumer_stopped() or fetcher_stopped()):
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    # As Faust's getmany: a fetch while the flow is stopped rewinds.
                    await self.perform_seek()
                    continue
                generation = self.app.consumer_generation_id
                batch: list[Any] = []
                for tp, tp_records in records.items():
                    if not (active is None or tp in active or tp in self._buffered_partitions):
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    for record in tp_records:
                        offset = record.offset
                        r_offset = read_offset[tp]
                        if r_offset is not None and offset < r_offset:
                            continue  # already read (Faust drops these too)
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(record.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        batch.append(self._to_message(tp, record))
                        read_offset[tp] = offset
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
                if batch and self.flow_active and generation == self.app.consumer_generation_id:
                    await self.wait_first(inbox.put(batch), self.suspend_flow.wait())
                # No reference may outlive the hand-over: a rebalance waits for what is tracked.
                batch = records = []  # type: ignore[assignment]

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer  # type: ignore[misc]
    return Transport


class TaggerApp(faust.App):
    """A Faust app whose consumer uses ``fetch_max_wait_ms`` and, given an inbox, hands records
    over in bulk (see module docstring)."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 100,
                 inbox: RecordInbox | None = None, **kwargs: Any) -> None:
        self._fetch_max_wait_ms = fetch_max_wait_ms
        # Where the fetcher puts records when the agent takes them in bulk (module docstring).
        self.inbox = inbox
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        transport_cls = make_transport(self._fetch_max_wait_ms)
        return transport_cls(self.conf.broker_consumer, self)
