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
"""
from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


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

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer  # type: ignore[misc]
    return Transport


class TaggerApp(faust.App):
    """A Faust app whose consumer uses ``fetch_max_wait_ms`` (see module docstring)."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 100, **kwargs: Any) -> None:
        self._fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        transport_cls = make_transport(self._fetch_max_wait_ms)
        return transport_cls(self.conf.broker_consumer, self)
