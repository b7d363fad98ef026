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
from typing import Protocol, Sequence

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


@dataclass
class TaggedBatch:
    """One batch's outcome: tagged tweets and dead letters, each with the record it came from."""

    tagged: list[tuple[KafkaRecord, TaggedTweet]] = field(default_factory=list)
    dead: list[tuple[KafkaRecord, DeadLetter]] = field(default_factory=list)
    # Seconds spent inside the model (parsing and packaging excluded).
    model_seconds: float = 0.0


def entities_in(text: str, mentions: Sequence[Mention],
                labels: set[str] | None = None) -> list[Entity]:
    """The model's mentions as wire entities; a span outside the text is dropped (it would
    corrupt every offset-based query downstream).

    Validated once: an entity's text is a slice of the already validated tweet text, so once
    its span and score are checked only the label is new, and ``labels`` remembers the labels
    that passed the full validation (a model has a handful), so the rest are built as is."""
    out = []
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
        if labels is not None and label in labels and math.isfinite(score):
            out.append(Entity.model_construct(start=start, end=end, text=text[start:end],
                                              label=label, score=score))
            continue
        out.append(Entity(start=start, end=end, text=text[start:end], label=label, score=score))
        if labels is not None:
            labels.add(label)
    return out


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
    batch = TaggedBatch(dead=dead)
    if not parsed:
        return batch
    started = time.perf_counter()
    results = _predict_isolating(model, [tweet.text for _, tweet in parsed])
    batch.model_seconds = time.perf_counter() - started
    labels: set[str] = set()
    # The tweet was validated when parsed and the model's name and version are the same for
    # the whole batch: one full validation, then the rest is assembled from validated parts.
    checked = False
    for (rec, tweet), mentions in zip(parsed, results):
        if isinstance(mentions, BaseException):
            batch.dead.append((rec, DeadLetter.for_record(
                stage, f"model error: {short_error(mentions)}", rec)))
            continue
        try:
            entities = entities_in(tweet.text, mentions, labels)
            # iter(): dict() of a model would first look for a keys() method, which pydantic
            # answers through __getattr__ with an exception, once per tweet.
            fields = dict(iter(tweet), entities=entities, model_name=model.model_name,
                          model_version=model.model_version)
            if checked:
                out = TaggedTweet.model_construct(**fields, tagged_at=utcnow())
            else:
                out = TaggedTweet(**fields)
                checked = True
            batch.tagged.append((rec, out))
        except (ValidationError, ValueError, TypeError, AttributeError) as exc:
            batch.dead.append((rec, DeadLetter.for_record(
                stage, f"bad model output: {short_error(exc)}", rec)))
    return batch
