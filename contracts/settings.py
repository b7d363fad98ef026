"""The settings base every stage extends: the Kafka bootstrap and the topic names, once.

Each stage has one typed class (ingest.settings, tagger.worker.settings, sink.settings) on
pydantic-settings. Every field names its environment variable with ``validation_alias``, so the
variable a user sets is the one the docs and the errors name; a bad value fails with one line
that names it (``SINK_BATCH_SIZE: Input should be a valid integer ... (got 'abc')``).

``from_env(env)`` reads a given mapping instead of ``os.environ`` (tests, child processes); the
mapping reaches pydantic-settings' own environment source through a context variable, because
that source is chosen per class, not per call.
"""
from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Any, Mapping, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from contracts.topics import DEFAULT_BOOTSTRAP, Topics

S = TypeVar("S", bound="StageSettings")

_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("tweetner_settings_environ", default=None)


class SettingsError(ValueError):
    """A setting has a value its stage cannot use; the message is one line naming the variable."""


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty,
                              self.env_parse_none_str)


class StageSettings(BaseSettings):
    """What every stage shares: where Kafka is and what the topics are called."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore",
                                      env_ignore_empty=True)

    kafka_bootstrap: str = Field(DEFAULT_BOOTSTRAP, validation_alias="KAFKA_BOOTSTRAP", min_length=1)
    tweets_topic: str = Field(Topics.tweets, validation_alias="TWEETS_TOPIC", min_length=1)
    tagged_topic: str = Field(Topics.tagged, validation_alias="TAGGED_TOPIC", min_length=1)
    deadletter_topic: str = Field(Topics.deadletter, validation_alias="DEADLETTER_TOPIC", min_length=1)
    # Partitions bound how many tagger workers (and sinks) can share the load.
    topic_partitions: int = Field(Topics.partitions, validation_alias="TOPIC_PARTITIONS", ge=1)

    @property
    def topics(self) -> Topics:
        return Topics(tweets=self.tweets_topic, tagged=self.tagged_topic,
                      deadletter=self.deadletter_topic, partitions=self.topic_partitions)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get()
        # Arguments first, then the environment; no dotenv or secrets files.
        return (init_settings, env_settings if environ is None else _MappingEnvSource(settings_cls, environ))

    @classmethod
    def from_env(cls: type[S], env: Mapping[str, str] | None = None, **overrides: Any) -> S:
        """The settings from ``env`` (default ``os.environ``), with ``overrides`` by field name."""
        token = _ENVIRON.set(os.environ if env is None else env)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(one_line(exc)) from None
        finally:
            _ENVIRON.reset(token)

    def with_(self: S, **changes: Any) -> S:
        """A copy with ``changes`` (field names), validated like the original."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update(changes)
        token = _ENVIRON.set({})
        try:
            return type(self)(**values)
        except ValidationError as exc:
            raise SettingsError(one_line(exc)) from None
        finally:
            _ENVIRON.reset(token)


def one_line(exc: ValidationError) -> str:
    """Each failing setting as ``VARIABLE: problem (got value)``, joined on one line."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or exc.title
        got = error.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        parts.append(f"{where}: {error['msg']}{shown}")
    return "; ".join(parts)
