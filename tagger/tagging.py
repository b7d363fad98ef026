"""Raw tweets to tagged tweets with any model: the one batch-tagging core.

The Faust agent (tagger.worker.agent) and `tweetner replay --retag` both call :func:`tag_records`.
Values are parsed here with pydantic (a bad value is a dead letter, never an exception inside a
consumer), the model runs once per batch, and a batch the model fails on is retried tweet by
tweet so that one poisonous text becomes one dead letter instead of sinking its neighbours.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, Sequence

import orjson
from pydantic import ValidationError

from contracts.decoding import decode_records, short_error
from contracts.messages import DeadLetter, Entity, KafkaRecord, TaggedTweet, Tweet, utcnow
from contracts.validation import MAX_ENTITY_CHARS

log = logging.getLogger(__name__)


class Mention(Protocol):
    start: int
    end: int
    text: str
    label: str
    score: float


class TextTagger(Protocol):
    """What the pipeline needs from a model (tagger.inference.NerTagger has this shape)."""

    model_name: str
    model_version: str

    def predict(self, texts: Sequence[str]) -> list[list[Mention]]: ...


Span = tuple[int, int, str, str, float]  # start, end, text, label, score: checked, as in Entity


@dataclass
class _Tagged:
    record: KafkaRecord
    tweet: Tweet
    spans: list[Span]


@dataclass
class TaggedBatch:
    """One batch's outcome: tagged tweets and dead letters, each with the record it came from.

    The tagged tweets are kept as their checked parts (the validated tweet, checked spans, the
    batch's model and time) and become messages on demand: :attr:`tagged` as
    :class:`TaggedTweet` objects (replay writes those), :meth:`wire` as the tagged topic's JSON
    (the worker sends those). Building pydantic objects only to serialise them was a quarter
    of the worker's CPU with a cheap model."""

    dead: list[tuple[KafkaRecord, DeadLetter]] = field(default_factory=list)
    # Seconds spent inside the model (parsing and packaging excluded).
    model_seconds: float = 0.0
    model_name: str = ""
    model_version: str = ""
    tagged_at: datetime = field(default_factory=utcnow)
    parts: list[_Tagged] = field(default_factory=list)
    _tagged: list[tuple[KafkaRecord, TaggedTweet]] | None = None

    @property
    def n_tagged(self) -> int:
        return len(self.parts)

    @property
    def tagged(self) -> list[tuple[KafkaRecord, TaggedTweet]]:
        if self._tagged is None:
            self._tagged = [(part.record, TaggedTweet.model_construct(
                **dict(iter(part.tweet)), entities=[_entity(span) for span in part.spans],
                model_name=self.model_name, model_version=self.model_version,
                tagged_at=self.tagged_at)) for part in self.parts]
        return self._tagged

    def wire(self) -> list[tuple[KafkaRecord, bytes, bytes]]:
        """(record, key, value) per tagged tweet: the JSON of its :class:`TaggedTweet` (the
        same fields; datetimes in RFC 3339 with an offset, which every stage parses)."""
        head = {"model_name": self.model_name, "model_version": self.model_version,
                "tagged_at": self.tagged_at}
        out = []
        for part in self.parts:
            # The tweet's own fields as the model has them, so a field added to Tweet travels too.
            message = {**dict(iter(part.tweet)),
                       "entities": [{"start": a, "end": b, "text": t, "label": lab, "score": sc}
                                    for a, b, t, lab, sc in part.spans], **head}
            out.append((part.record, part.tweet.id.encode("utf-8"), orjson.dumps(message)))
        return out


def _entity(span: Span) -> Entity:
    start, end, text, label, score = span
    return Entity.model_construct(start=start, end=end, text=text, label=label, score=score)


def _checked_spans(text: str, mentions: Sequence[Mention], labels: set[str] | None) -> list[Span]:
    """The model's mentions that may become entities of ``text``; a span outside the text is
    dropped (it would corrupt every offset-based query downstream).

    Checked once: an entity's text is a slice of the already validated tweet text, so once its
    span and score are checked only the label is new, and ``labels`` remembers the labels that
    passed the full :class:`Entity` validation (a model has a handful)."""
    out: list[Span] = []
    for m in mentions:
        start, end = int(m.start), int(m.end)
        if not 0 <= start < end <= len(text):
            log.warning("dropping out-of-range span %d:%d for a text of %d chars", start, end, len(text))
            continue
        if end - start > MAX_ENTITY_CHARS:
            # Longer than a trend key may be; dropping the span keeps the tweet storable.
            log.warning("dropping a %d-char span (limit %d)", end - start, MAX_ENTITY_CHARS)
            continue
        label, score = str(m.label), float(m.score)
        if labels is None or label not in labels or not math.isfinite(score):
            Entity(start=start, end=end, text=text[start:end], label=label, score=score)
            if labels is not None:
                labels.add(label)
        out.append((start, end, text[start:end], label, score))
    return out


def entities_in(text: str, mentions: Sequence[Mention],
                labels: set[str] | None = None) -> list[Entity]:
    """The model's mentions as wire entities (see :func:`_checked_spans` for what is dropped)."""
    return [_entity(span) for span in _checked_spans(text, mentions, labels)]


def _predict(model: TextTagger, texts: list[str]) -> list[list[Mention]]:
    result = list(model.predict(texts))
    if len(result) != len(texts):
        raise RuntimeError(f"model returned {len(result)} results for {len(texts)} texts")
    return result


def _predict_isolating(model: TextTagger, texts: list[str]) -> list[list[Mention] | BaseException]:
    try:
        return list(_predict(model, texts))
    except Exception as exc:  # noqa: BLE001 - any model failure: find the tweet that caused it
        log.warning("batch of %d failed (%s); tagging tweet by tweet", len(texts), short_error(exc))
    results: list[list[Mention] | BaseException] = []
    for text in texts:
        try:
            results.append(_predict(model, [text])[0])
        except Exception as one:  # noqa: BLE001 - this tweet's own failure, dead-lettered
            results.append(one)
    return results


def tag_records(records: Sequence[KafkaRecord], model: TextTagger, stage: str) -> TaggedBatch:
    """Parses raw :class:`Tweet` values and tags them with ``model`` (blocking: the Faust agent
    runs it in a worker thread so its event loop keeps heartbeating)."""
    parsed, dead = decode_records(records, Tweet, stage)
    batch = TaggedBatch(dead=dead, model_name=model.model_name, model_version=model.model_version)
    if not parsed:
        return batch
    started = time.perf_counter()
    results = _predict_isolating(model, [tweet.text for _, tweet in parsed])
    batch.model_seconds = time.perf_counter() - started
    labels: set[str] = set()
    # The tweet was validated when parsed and the model's name and version are the same for
    # the whole batch: one full validation of a tagged tweet, then the rest is checked parts.
    checked = False
    for (rec, tweet), mentions in zip(parsed, results):
        if isinstance(mentions, BaseException):
            batch.dead.append((rec, DeadLetter.for_record(
                stage, f"model error: {short_error(mentions)}", rec)))
            continue
        try:
            spans = _checked_spans(tweet.text, mentions, labels)
            if not checked:
                # iter(): dict() of a model would first look for a keys() method, which
                # pydantic answers through __getattr__ with an exception.
                TaggedTweet(**dict(iter(tweet)), entities=[_entity(sp) for sp in spans],
                            model_name=batch.model_name, model_version=batch.model_version,
                            tagged_at=batch.tagged_at)
                checked = True
            batch.parts.append(_Tagged(rec, tweet, spans))
        except (ValidationError, ValueError, TypeError, AttributeError) as exc:
            batch.dead.append((rec, DeadLetter.for_record(
                stage, f"bad model output: {short_error(exc)}", rec)))
    return batch
