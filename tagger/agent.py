"""The tagger agent's work, separate from Faust's wiring (tagger/app.py) so it can be tested alone.

A batch of raw Kafka values becomes tagged tweets and dead letters: values are parsed here with
pydantic (never by a Faust deserializer, whose failure can silently end a ``take()`` agent), the
model runs once per batch in a worker thread so the event loop keeps heartbeating, and a failing
batch is retried tweet by tweet so one poisonous tweet cannot sink its neighbours.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from pydantic import ValidationError

from tagger.agent_settings import AgentSettings
from tweetner.messages import DeadLetter, Entity, TaggedTweet, Tweet

log = logging.getLogger(__name__)


class Mention(Protocol):
    start: int
    end: int
    text: str
    label: str
    score: float


class TextTagger(Protocol):
    """What the agent needs from a model (tagger.inference.NerTagger has this shape)."""

    model_name: str
    model_version: str

    def predict(self, texts: Sequence[str]) -> list[list[Mention]]: ...


def load_model(settings: AgentSettings) -> TextTagger:
    """Build the model with ``settings.model_factory`` ("module:attr.path")."""
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    module_name, _, attr_path = settings.model_factory.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        target = getattr(target, part)
    return target(model_dir=settings.model_dir, device=settings.device,
                  precision=settings.precision)


@dataclass(frozen=True)
class InputRecord:
    value: bytes | None
    topic: str
    partition: int
    offset: int

    @property
    def source(self) -> str:
        return f"{self.topic}/{self.partition}"


@dataclass
class BatchOutcome:
    tagged: list[TaggedTweet] = field(default_factory=list)
    dead: list[tuple[InputRecord, DeadLetter]] = field(default_factory=list)


def _entities(text: str, mentions: Sequence[Mention]) -> list[Entity]:
    out = []
    for m in mentions:
        start, end = int(m.start), int(m.end)
        if not 0 <= start < end <= len(text):
            # A span outside the text would corrupt every offset-based query downstream.
            log.warning("dropping out-of-range span %d:%d for a text of %d chars", start, end, len(text))
            continue
        out.append(Entity(start=start, end=end, text=text[start:end], label=str(m.label),
                          score=float(m.score)))
    return out


class BatchTagger:
    """Parses, tags and packages one micro-batch."""

    def __init__(self, model: TextTagger, executor: Executor) -> None:
        self.model = model
        self.executor = executor
        # Seconds spent inside the model for the last batch (parsing and packaging excluded).
        self.last_model_s = 0.0

    async def _predict(self, texts: list[str]) -> list[list[Mention]]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            result = await loop.run_in_executor(self.executor, self.model.predict, texts)
        finally:
            self.last_model_s += time.perf_counter() - started
        if len(result) != len(texts):
            raise RuntimeError(f"model returned {len(result)} results for {len(texts)} texts")
        return result

    async def tag(self, records: Sequence[InputRecord]) -> BatchOutcome:
        outcome = BatchOutcome()
        self.last_model_s = 0.0
        parsed: list[tuple[InputRecord, Tweet]] = []
        for rec in records:
            try:
                if rec.value is None:
                    raise ValueError("empty value")
                parsed.append((rec, Tweet.model_validate_json(rec.value)))
            except (ValidationError, ValueError) as exc:
                outcome.dead.append((rec, self._dead(rec, f"invalid tweet: {_short(exc)}")))
        if not parsed:
            return outcome
        texts = [t.text for _, t in parsed]
        try:
            results: list[list[Mention] | BaseException] = list(await self._predict(texts))
        except Exception as exc:  # noqa: BLE001 - isolate the tweet that broke the batch
            log.warning("batch of %d failed (%s); retrying tweet by tweet", len(texts), _short(exc))
            results = []
            for text in texts:
                try:
                    results.append((await self._predict([text]))[0])
                except Exception as one_exc:  # noqa: BLE001
                    results.append(one_exc)
        name, version = self.model.model_name, self.model.model_version
        for (rec, tweet), mentions in zip(parsed, results):
            if isinstance(mentions, BaseException):
                outcome.dead.append((rec, self._dead(rec, f"model error: {_short(mentions)}")))
                continue
            try:
                outcome.tagged.append(TaggedTweet(
                    **tweet.model_dump(), entities=_entities(tweet.text, mentions),
                    model_name=name, model_version=version))
            except (ValidationError, ValueError, TypeError, AttributeError) as exc:
                outcome.dead.append((rec, self._dead(rec, f"bad model output: {_short(exc)}")))
        return outcome

    @staticmethod
    def _dead(rec: InputRecord, reason: str) -> DeadLetter:
        return DeadLetter.for_payload("tagger", reason, rec.value, source=rec.source,
                                      position=rec.offset)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text[:limit]


class AgentMetrics:
    """Counters and recent rates for the /metrics view; only touched from the event loop."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.started = time.time()
        self.window_s = window_s
        self.tweets_total = 0
        self.tagged_total = 0
        self.dead_letters_total = 0
        self.batches_total = 0
        self.send_retries_total = 0
        self.last_batch_size = 0
        self.last_batch_latency_s = 0.0
        self.last_model_latency_s = 0.0
        self.max_batch_latency_s = 0.0
        # (finished_at, tweets, batch latency) of recent batches, for rates over the window.
        self._recent: deque[tuple[float, int, float]] = deque()
        # Next offset to process per (topic, partition), for lag.
        self.next_offsets: dict[tuple[str, int], int] = {}

    def record_batch(self, n: int, tagged: int, dead: int, latency_s: float, model_s: float) -> None:
        now = time.time()
        self.tweets_total += n
        self.tagged_total += tagged
        self.dead_letters_total += dead
        self.batches_total += 1
        self.last_batch_size = n
        self.last_batch_latency_s = latency_s
        self.last_model_latency_s = model_s
        self.max_batch_latency_s = max(self.max_batch_latency_s, latency_s)
        self._recent.append((now, n, latency_s))
        while self._recent and self._recent[0][0] < now - self.window_s:
            self._recent.popleft()

    def snapshot(self, lag: dict[str, int] | None = None) -> dict[str, Any]:
        now = time.time()
        recent = [r for r in self._recent if r[0] >= now - self.window_s]
        span = min(self.window_s, now - self.started) or 1e-9
        n_recent = sum(r[1] for r in recent)
        return {
            "uptime_s": round(now - self.started, 1),
            "tweets_total": self.tweets_total,
            "tagged_total": self.tagged_total,
            "dead_letters_total": self.dead_letters_total,
            "batches_total": self.batches_total,
            "send_retries_total": self.send_retries_total,
            "tweets_per_second": round(n_recent / span, 2),
            "batch_size_avg": round(n_recent / len(recent), 2) if recent else 0.0,
            "batch_size_last": self.last_batch_size,
            "batch_latency_ms_avg": round(1000 * sum(r[2] for r in recent) / len(recent), 1) if recent else 0.0,
            "batch_latency_ms_last": round(1000 * self.last_batch_latency_s, 1),
            "batch_latency_ms_max": round(1000 * self.max_batch_latency_s, 1),
            "model_latency_ms_last": round(1000 * self.last_model_latency_s, 1),
            "consumer_lag": lag or {},
            "consumer_lag_total": sum((lag or {}).values()),
        }
