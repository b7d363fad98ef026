"""Turning replayed Kafka records into TaggedTweets: as they are (re-sink) or re-tagged.

Kept apart from the consumer loop in tweetner/replay.py so the decoding rules (what becomes a
dead letter, and why) can be read and tested without a broker.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tagger.agent import TextTagger, _entities
from tweetner.messages import DeadLetter, TaggedTweet, Tweet

log = logging.getLogger(__name__)


def record_source(msg: Any) -> str:
    return f"{msg.topic}/{msg.partition}@{msg.offset}"


def dead_letter(msg: Any, reason: str) -> DeadLetter:
    return DeadLetter.for_payload("replay", reason[:1000], msg.value, source=record_source(msg),
                                  position=msg.offset)


def _short(exc: BaseException, limit: int = 300) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")[:limit]


@dataclass
class Decoded:
    """One batch's outcome: records to store (each with the Kafka record it came from)."""

    tagged: list[tuple[Any, TaggedTweet]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


def _parse(msgs: Sequence[Any], model: type[Tweet]) -> tuple[list[tuple[Any, Any]], list[DeadLetter]]:
    good, dead = [], []
    for msg in msgs:
        try:
            if msg.value is None:
                raise ValueError("empty value")
            good.append((msg, model.model_validate_json(msg.value)))
        except (ValidationError, ValueError) as exc:
            dead.append(dead_letter(msg, f"invalid {model.__name__}: {_short(exc)}"))
    return good, dead


def check(msgs: Sequence[Any], raw: bool) -> tuple[int, list[DeadLetter]]:
    """Dry run: how many records would be stored, and the dead letters the rest would become."""
    good, dead = _parse(msgs, Tweet if raw else TaggedTweet)
    return len(good), dead


def decode_tagged(msgs: Sequence[Any]) -> Decoded:
    """Re-sink: the topic already holds TaggedTweet records."""
    good, dead = _parse(msgs, TaggedTweet)
    return Decoded(tagged=good, dead=dead)


def retag(msgs: Sequence[Any], model: TextTagger) -> Decoded:
    """Backfill: parse raw Tweets and tag them with ``model`` in one call.

    A batch the model cannot handle is retried tweet by tweet, so one poisonous text becomes one
    dead letter instead of stopping the replay (the same rule as the live tagger agent).
    """
    parsed, dead = _parse(msgs, Tweet)
    out = Decoded(dead=dead)
    if not parsed:
        return out
    texts = [tweet.text for _, tweet in parsed]
    results: list[Any]
    try:
        results = list(model.predict(texts))
        if len(results) != len(texts):
            raise RuntimeError(f"model returned {len(results)} results for {len(texts)} texts")
    except Exception as exc:  # noqa: BLE001 - isolate the tweet that broke the batch
        log.warning("batch of %d failed (%s); retagging tweet by tweet", len(texts), _short(exc))
        results = []
        for text in texts:
            try:
                results.append(model.predict([text])[0])
            except Exception as one:  # noqa: BLE001
                results.append(one)
    for (msg, tweet), mentions in zip(parsed, results):
        if isinstance(mentions, BaseException):
            out.dead.append(dead_letter(msg, f"model error: {_short(mentions)}"))
            continue
        try:
            out.tagged.append((msg, TaggedTweet(
                **tweet.model_dump(), entities=_entities(tweet.text, mentions),
                model_name=model.model_name, model_version=model.model_version)))
        except (ValidationError, ValueError, TypeError, AttributeError) as exc:
            out.dead.append(dead_letter(msg, f"bad model output: {_short(exc)}"))
    return out
