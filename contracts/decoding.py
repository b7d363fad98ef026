"""Kafka record values to messages: what every consumer does first, with one rule for failures.

A value that does not validate as the expected message becomes a dead letter of the reading stage
with the pydantic error as its reason; nothing raises, so one bad record never stops a consumer.
"""
from __future__ import annotations

from typing import Sequence, TypeVar

from pydantic import BaseModel, ValidationError

from contracts.messages import DeadLetter, KafkaRecord
from contracts.validation import describe

M = TypeVar("M", bound=BaseModel)


def short_error(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line, for a dead letter's reason or a log line; a validation error
    as each field and what is wrong with it (contracts.validation's words)."""
    if isinstance(exc, ValidationError):
        text = "; ".join(describe(error) for error in exc.errors())
    else:
        text = str(exc)
    return f"{type(exc).__name__}: {text}".replace("\n", " ")[:limit]


def decode_records(records: Sequence[KafkaRecord], model: type[M], stage: str,
                   ) -> tuple[list[tuple[KafkaRecord, M]], list[tuple[KafkaRecord, DeadLetter]]]:
    """Each value validated as ``model``, kept with its record; the rest as dead letters."""
    good: list[tuple[KafkaRecord, M]] = []
    dead: list[tuple[KafkaRecord, DeadLetter]] = []
    for rec in records:
        try:
            if rec.value is None:
                raise ValueError("empty value")
            good.append((rec, model.model_validate_json(rec.value)))
        except (ValidationError, ValueError) as exc:
            dead.append((rec, DeadLetter.for_record(
                stage, f"invalid {model.__name__}: {short_error(exc)}", rec)))
    return good, dead
