"""The model behind POST /tag, loaded on the first request (the dashboard never needs it)."""
from __future__ import annotations

import logging
import threading
from typing import Callable, Sequence

from tagger.tagging import Mention, TextTagger, entities_in
from tweetner.api.schemas import TagResponse, TagResult, TaggedEntity

log = logging.getLogger(__name__)

TaggerFactory = Callable[[], TextTagger]


def default_factory(model_dir: str | None, device: str | None,
                    precision: str | None) -> TaggerFactory:
    """The tagger loader's model for these settings (the shipped one without a directory)."""

    def load() -> TextTagger:
        try:
            from tagger.loading import load_tagger
        except ImportError:  # a checkout from before the backend-neutral loader
            from tagger.inference import NerTagger

            return NerTagger.load(model_dir, device=device, precision=precision)
        return load_tagger(model_dir, device=device, precision=precision)

    return load


class ModelUnavailable(RuntimeError):
    """The model for /tag could not be loaded; the message says which and why, on one line."""


class LazyTagger:
    """Loads once, on first use, and runs one batch at a time: the model is not thread-safe and
    two batches at once would only compete for the same cores."""

    def __init__(self, factory: TaggerFactory) -> None:
        self._factory = factory
        self._model: TextTagger | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def tag(self, texts: Sequence[str]) -> TagResponse:
        with self._lock:
            if self._model is None:
                log.info("loading the model for /tag")
                try:
                    self._model = self._factory()
                except Exception as exc:  # noqa: BLE001 - any load failure: say which and why
                    first = str(exc).strip().splitlines()
                    raise ModelUnavailable(
                        f"cannot load the model for /tag ({first[0] if first else type(exc).__name__}); "
                        "fix TAGGER_MODEL_DIR or leave it unset for the shipped model") from exc
            model = self._model
            found: list[list[Mention]] = list(model.predict(list(texts)))
        if len(found) != len(texts):
            raise RuntimeError(f"model returned {len(found)} results for {len(texts)} texts")
        results = [TagResult(entities=[TaggedEntity(**e.model_dump())
                                       for e in entities_in(text, mentions)])
                   for text, mentions in zip(texts, found)]
        return TagResponse(model_name=model.model_name, model_version=model.model_version,
                           results=results)
