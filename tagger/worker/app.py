"""The Faust worker: tweets topic -> micro-batches -> model -> tagged topic (+ dead letters).

Delivery is at-least-once and never relies on Faust acking for us:

* values and keys are ``raw`` bytes, so no deserializer can fail inside Faust;
* batches come from the fetcher in bulk (tagger.worker.inbox, tagger.worker.transport), not
  through a Faust stream, whose per-record events cost more than tagging with a small model;
  each message is acked by hand only after every output of its batch (tagged records and dead
  letters) was acknowledged by the broker. If anything in between raises or the task is
  cancelled, nothing is acked, so the offsets are not committed and the batch is re-read after
  a restart or rebalance (the sink is idempotent, so a re-read batch changes nothing);
* sends that fail are retried with backoff; if the broker stays away past ``send_timeout_s`` the
  worker shuts itself down rather than skip the batch.

No Faust tables: they cannot be updated from a batch safely, and the aggregates live in
PostgreSQL (the sink) anyway.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import faust
from prometheus_client import CONTENT_TYPE_LATEST

from contracts.heap import settle_after_start_up
from contracts.messages import record_source
from tagger.tagging import TextTagger
from tagger.worker.agent import AgentMetrics, BatchTagger, InputRecord, TopicWatch
from tagger.worker.health import Streaks
from tagger.worker.inbox import RecordInbox
from tagger.worker.metrics import TaggerMetrics
from tagger.worker.settings import AgentSettings
from tagger.worker.transport import TaggerApp

log = logging.getLogger(__name__)


class _Health:
    """Everything that can keep the worker from making progress, as one problem line."""

    def __init__(self, watch: TopicWatch, streaks: Streaks) -> None:
        self.watch = watch
        self.streaks = streaks

    @property
    def problem(self) -> str | None:
        return "; ".join(p for p in (self.watch.problem, self.streaks.problem) if p) or None


def create_app(settings: AgentSettings, model: TextTagger) -> faust.App:
    """The Faust app: the tagging agent, its output sender, and the /metrics, /metrics.json
    and /health pages."""
    inbox = RecordInbox(max_records=2 * settings.batch_size)
    app = _faust_app(settings, inbox)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagger-model")
    metrics = AgentMetrics()
    watch = TopicWatch(settings.kafka_bootstrap, {settings.topics.tweets: settings.topics.partitions,
                                                  settings.topics.tagged: settings.topics.partitions})
    health = _Health(watch, Streaks())
    prom = TaggerMetrics(
        model.model_name, model.model_version, problem=lambda: health.problem,
        lag=lambda: _consumer_lag(app, settings.topics.tweets, metrics, keyed=True))
    app.tweetner_executor = executor  # type: ignore[attr-defined]
    app.tweetner_topic_watch = watch  # type: ignore[attr-defined]
    _add_agent(app, inbox, settings, BatchTagger(model, executor), metrics, prom, health)
    _add_topic_watch(app, watch, settings.topic_watch_interval_s)
    _add_pages(app, settings, model, metrics, prom, health)
    return app


def _add_topic_watch(app: faust.App, watch: TopicWatch, interval_s: float) -> None:
    @app.timer(interval=interval_s)
    async def watch_topics() -> None:
        before = watch.problem
        problem = await asyncio.get_running_loop().run_in_executor(None, watch.check)
        if problem and problem != before:
            log.critical("tagger cannot make progress: %s (restart it after fixing the topics "
                         "or TOPIC_PARTITIONS)", problem)
        elif before and not problem:
            log.warning("topics match again; resuming")


def _faust_app(s: AgentSettings, inbox: RecordInbox) -> faust.App:
    return TaggerApp(
        s.group,
        fetch_max_wait_ms=s.fetch_max_wait_ms,
        inbox=inbox,
        broker=f"kafka://{s.kafka_bootstrap.replace(',', ';kafka://')}",
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=os.path.join(s.data_dir, s.group),
        web_enabled=True,
        web_host=s.web_host,
        web_port=s.web_port,
        web_bind=s.web_host,
        topic_partitions=s.topics.partitions,
        topic_replication_factor=1,
        broker_heartbeat_interval=s.heartbeat_interval_s,
        broker_session_timeout=s.session_timeout_s,
        broker_rebalance_timeout=s.rebalance_timeout_s,
        broker_commit_interval=s.commit_interval_s,
        # A batch that takes long (a big one on a slow CPU) is work, not a livelock: warn only
        # after max_batch_seconds, and let the consumer go that long between polls.
        broker_commit_livelock_soft_timeout=s.max_batch_seconds,
        broker_max_poll_interval=s.max_batch_seconds + 60,
        stream_processing_timeout=s.max_batch_seconds,
        producer_acks=-1,
        producer_linger=s.producer_linger_ms / 1000.0,
        producer_max_batch_size=s.producer_batch_bytes,
        # On shutdown and rebalance Faust waits for in-flight events to be acked and commits them.
        stream_wait_empty=True,
        consumer_auto_offset_reset="earliest",
    )


class Output(NamedTuple):
    """One record to produce; ``partition`` None lets the key choose it."""

    topic: str
    key: bytes
    value: bytes
    partition: int | None = None


class _OutputSender:
    """Sends a batch's outputs and waits for the broker's acks, retrying the whole set until it
    sticks; after ``send_timeout_s`` the worker stops without acking, so the batch is re-read.

    Records with a partition go to the broker as one record batch per partition (aiokafka's
    batch builder, records appended in C), the rest one by one through the app's producer (the
    key picks the partition as a Faust topic would). ``Topic.send`` would wrap each record in
    channel, future and callback objects, and even the producer's own ``send`` is a few
    coroutines, a partitioner call and a future per record: together more than tagging it with
    a small model."""

    def __init__(self, app: faust.App, send_timeout_s: float, metrics: AgentMetrics,
                 prom: TaggerMetrics, streaks: Streaks) -> None:
        self.app = app
        self.send_timeout_s = send_timeout_s
        self.metrics = metrics
        self.prom = prom
        self.streaks = streaks

    async def _send_once(self, outputs: list[Output]) -> None:
        producer = self.app.producer
        futures: list[Any] = []
        by_partition: dict[tuple[str, int], list[Output]] = {}
        for out in outputs:
            if out.partition is None:
                futures.append(await producer.send(out.topic, out.key, out.value, None, None, None))
            else:
                by_partition.setdefault((out.topic, out.partition), []).append(out)
        if by_partition:
            client = producer._ensure_producer()  # aiokafka's producer: batches bypass Faust
            for (topic, partition), records in by_partition.items():
                batch = client.create_batch()
                for out in records:
                    if batch.append(key=out.key, value=out.value, timestamp=None) is None:
                        # Full: this batch goes, the record opens the next (an empty batch
                        # takes any record, so a second refusal cannot happen).
                        futures.append(await client.send_batch(batch, topic, partition=partition))
                        batch = client.create_batch()
                        batch.append(key=out.key, value=out.value, timestamp=None)
                futures.append(await client.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)

    async def send_all(self, outputs: list[Output], where: str) -> None:
        deadline = time.monotonic() + self.send_timeout_s
        delay = 0.2
        while True:
            try:
                await self._send_once(outputs)
                self.streaks.succeeded("send")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any send failure is retried the same way
                self.metrics.send_retries_total += 1
                self.prom.send_retries.inc()
                self.streaks.failed("send", f"outputs of the batch at {where} not acknowledged: "
                                            f"{type(exc).__name__}: {exc}")
                if time.monotonic() + delay > deadline:
                    log.critical("outputs not acknowledged for %.0fs (%s): stopping the worker "
                                 "without committing this batch", self.send_timeout_s, exc)
                    os.kill(os.getpid(), signal.SIGTERM)
                    await asyncio.sleep(3600)  # cancelled by the shutdown
                log.warning("sending %d outputs failed (%s); retrying in %.1fs",
                            len(outputs), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def _add_agent(app: faust.App, inbox: RecordInbox, s: AgentSettings, batch_tagger: BatchTagger, metrics: AgentMetrics,
               prom: TaggerMetrics, health: _Health) -> None:
    tweets = app.topic(s.topics.tweets, value_serializer="raw", key_serializer="raw",
                       partitions=s.topics.partitions)
    tagged, dead = s.topics.tagged, s.topics.deadletter
    sender = _OutputSender(app, s.send_timeout_s, metrics, prom, health.streaks)

    app.topics.add(tweets)  # subscribed as an agent's topic would be; read through the inbox

    async def deliver(events: list[Any], records: list[InputRecord], outcome: Any,
                      outputs: list[Output], where: str, started: float) -> None:
        # Acks only after the outputs are acknowledged: a crash before re-processes the batch.
        await sender.send_all(outputs, where)
        consumer = app.consumer
        for message in events:
            consumer.ack(message)
        for rec in records:
            key = (rec.topic, rec.partition)
            metrics.next_offsets[key] = max(metrics.next_offsets.get(key, 0), rec.offset + 1)
        metrics.record_batch(len(records), outcome.n_tagged, len(outcome.dead),
                             time.perf_counter() - started, outcome.model_seconds)
        prom.batch_done(len(records), outcome.n_tagged,
                        [letter.reason for _, letter in outcome.dead],
                        time.perf_counter() - started, outcome.model_seconds)
        if outcome.dead:
            log.info("batch of %d: %d dead letters", len(records), len(outcome.dead))

    @app.task
    async def tag_tweets() -> None:
        consumer = app.consumer
        # Deliveries (sends, then acks) of the batches tagged before this one, oldest first.
        # Faust commits only offsets acked without gaps, so acks finishing out of order are safe.
        in_flight: deque[asyncio.Future[None]] = deque()
        try:
            while not app.should_stop:
                messages = await inbox.take(s.batch_size, s.batch_within_s)
                # A rebalance in progress, or records fetched before it: the new assignment
                # re-reads them from the committed offsets (Faust drops buffered events so too).
                generation = app.consumer_generation_id
                if not consumer.flow_active:
                    continue
                events = [m for m in messages if m.generation_id == generation]
                if not events:
                    continue
                consumer.track_batch(events)
                # Sending with a stale partition count would lose tweets while counting them as
                # done: hold the batch, unacked, until the topics match (health says why).
                while health.watch.problem:
                    await asyncio.sleep(1.0)
                started = time.perf_counter()
                records = [InputRecord(m.value, m.topic, m.partition, m.offset) for m in events]
                where = record_source(records[0]) if records else "?"
                outcome = await batch_tagger.tag(records)
                _note_model_failures(outcome, health.streaks, where)
                # A tagged tweet goes to its input's partition number: the topics share one
                # partition count (the topic watch holds the batch when they do not), so for a
                # tweet ingest keyed by id this is the partition its key picks anyway.
                outputs = [Output(tagged, key, value, rec.partition)
                           for rec, key, value in outcome.wire()]
                outputs += [Output(dead, (letter.source or "").encode("utf-8"),
                                   letter.model_dump_json().encode("utf-8"))
                            for _, letter in outcome.dead]
                in_flight.append(asyncio.ensure_future(
                    deliver(events, records, outcome, outputs, where, started)))
                while len(in_flight) >= s.batches_in_flight or (in_flight and in_flight[0].done()):
                    await in_flight.popleft()
            while in_flight:
                await in_flight.popleft()
        finally:
            # Stopping: what is not delivered is not acked, and is re-read after the restart.
            for task in in_flight:
                task.cancel()


def _note_model_failures(outcome: Any, streaks: Streaks, where: str) -> None:
    """A model that fails on every tweet turns the stream into dead letters: a streak."""
    failed = [letter.reason for _, letter in outcome.dead if letter.reason.startswith("model error")]
    if failed and not outcome.n_tagged:
        streaks.failed("model", f"the model failed on every tweet of the batch at {where}: "
                                f"{failed[-1]}")
    elif outcome.n_tagged:
        streaks.succeeded("model")


def _consumer_lag(app: faust.App, topic: str, metrics: AgentMetrics,
                  keyed: bool = False) -> dict[Any, int]:
    """Per assigned partition of ``topic``: "topic/partition" (or (topic, partition) when
    ``keyed``) -> records past what the worker has done."""
    lag: dict[Any, int] = {}
    consumer = app.consumer
    try:
        assigned = consumer.assignment()
    except Exception:  # noqa: BLE001 - not started yet
        return lag
    for tp in assigned:
        if tp.topic != topic:
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - no fetch yet for this partition
            continue
        if highwater is None:
            continue
        done = metrics.next_offsets.get((tp.topic, tp.partition))
        if done is None:
            done = app.monitor.tp_committed_offsets.get(tp, 0) if app.monitor else 0
        key = (tp.topic, tp.partition) if keyed else f"{tp.topic}/{tp.partition}"
        lag[key] = max(0, int(highwater) - int(done))
    return lag


def _add_pages(app: faust.App, s: AgentSettings, model: TextTagger, metrics: AgentMetrics,
               prom: TaggerMetrics, health: _Health) -> None:
    # Prometheus scrapes /metrics; /metrics/ answers the same so that no scraper gets JSON.
    for path in ("/metrics", "/metrics/"):
        @app.page(path, name=f"prometheus{path.replace('/', '_')}")
        async def prometheus_view(web: faust.web.View,
                                  request: faust.web.Request) -> faust.web.Response:
            return web.bytes(prom.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # The same figures as JSON, with recent rates (`tweetner up` and the benchmark read it).
    @app.page("/metrics.json")
    async def metrics_view(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        data = metrics.snapshot(_consumer_lag(app, s.topics.tweets, metrics))
        data.update(model_name=model.model_name, model_version=model.model_version,
                    group=s.group, batch_max=s.batch_size, batch_within_s=s.batch_within_s)
        return web.json(data)

    for path in ("/health", "/health/"):
        @app.page(path, name=f"health{path.replace('/', '_')}")
        async def health_view(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
            return _health_page(web, app, s, model, metrics, health)


def _health_page(web: faust.web.View, app: faust.App, s: AgentSettings, model: TextTagger,
                 metrics: AgentMetrics, health: _Health) -> faust.web.Response:
    try:
        assigned = sorted(f"{tp.topic}/{tp.partition}" for tp in app.consumer.assignment()
                          if tp.topic == s.topics.tweets)
    except Exception:  # noqa: BLE001
        assigned = []
    problem = health.problem
    ok = app.started and not app.should_stop and not problem
    status = "unhealthy" if problem else "ok" if ok else "starting"
    return web.json({"status": status, "reason": problem, "pid": os.getpid(),
                     "model_name": model.model_name, "model_version": model.model_version,
                     "assigned_partitions": assigned,
                     "tweets_total": metrics.tweets_total},
                    status=200 if ok else 503)


def run_worker(settings: AgentSettings, model: TextTagger, *, loglevel: str = "info") -> int:
    """Run one worker until SIGINT/SIGTERM; returns the exit code."""
    os.makedirs(settings.data_dir, exist_ok=True)
    app = create_app(settings, model)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    settle_after_start_up()
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        app.tweetner_executor.shutdown(wait=False, cancel_futures=True)  # type: ignore[attr-defined]
        app.tweetner_topic_watch.close()  # type: ignore[attr-defined]
    return 0
