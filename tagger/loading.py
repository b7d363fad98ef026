"""One loader for every backend: a model directory's config says what it is.

Every stage (the Faust agent, replay, `predict`, `evaluate`, `bench tagger`, the HTTP API) loads
through :func:`load_tagger` and talks to the :class:`Tagger` it returns; none of them knows which
architecture is behind it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

ARCHITECTURES = ("span-marker", "token-classification", "bilstm-crf")


class Tagger(Protocol):
    """Raw texts in; entities with character offsets on the raw text, labels and scores out."""

    model_name: str
    model_version: str
    precision: str
    device: Any
    stats: Any  # tagger.inference.PredictStats: what the last calls cost

    @property
    def labels(self) -> list[str]: ...

    def predict(self, texts: Sequence[str]) -> list[list[Any]]: ...

    def predict_words(self, sentences: Sequence[Sequence[str]]) -> list[list[Any]]: ...


class ModelDirectoryError(ValueError):
    """A directory that is not a model any backend can load; the message says why in one line."""


def architecture_of(model_dir: str | Path) -> str:
    """The backend that reads ``model_dir``, from its config.json alone."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ModelDirectoryError(f"{model_dir} is not a model directory (no config.json)")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelDirectoryError(f"{path} is not readable JSON: {exc}") from None
    meta = config.get("tweetner") if isinstance(config.get("tweetner"), dict) else {}
    declared = meta.get("architecture")
    if declared in ARCHITECTURES:
        return declared
    architectures = config.get("architectures") or []
    if config.get("model_type") == "span-marker" or "SpanMarkerModel" in architectures:
        return "span-marker"
    if any(str(a).endswith("ForTokenClassification") for a in architectures):
        return "token-classification"
    raise ModelDirectoryError(
        f"{model_dir} holds no model tweetner can run (architectures {architectures or 'not given'}, "
        f"model_type {config.get('model_type')!r}); expected span-marker, a Hugging Face "
        "*ForTokenClassification checkpoint or a BiLSTM-CRF written by `tweetner train`")


def load_tagger(model_dir: str | Path | None = None, device: str | None = None, precision: str | None = None,
                **kwargs: Any) -> Tagger:
    """The tagger for ``model_dir`` (None: the shipped default model). Extra keyword arguments go
    to the backend (fixed_padding for span-marker, label_map for token classification)."""
    from tagger.inference import NerTagger, default_model_dir

    directory = Path(model_dir) if model_dir is not None else default_model_dir()
    arch = architecture_of(directory)
    if arch == "span-marker":
        return NerTagger.load(directory, device=device, precision=precision, **kwargs)
    kwargs.pop("fixed_padding", None)  # a span-marker option; word taggers never pad that way
    if arch == "token-classification":
        from tagger.backends.token_classification import TokenClassificationTagger

        return TokenClassificationTagger.load(directory, device=device, precision=precision, **kwargs)
    from tagger.backends.bilstm_crf import BiLstmCrfTagger

    return BiLstmCrfTagger.load(directory, device=device, precision=precision, **kwargs)


def supported_precisions(tagger: Tagger) -> tuple[str, ...]:
    """The inference precisions a loaded tagger's backend can run (for the benchmark matrix)."""
    from tagger.configuration import PRECISIONS

    return tuple(getattr(tagger, "PRECISIONS", PRECISIONS))
