"""What keeps the tagger from making progress, besides its topics (agent.TopicWatch).

A streak is a run of failures of one kind with nothing stored in between: the outputs of the
batch in hand not acknowledged, or the model failing on every tweet of batch after batch
(each tweet then becomes a dead letter, which looks like progress but is not). After
``after`` failures in a row the streak is the worker's health problem, in one line, until a
success of the same kind clears it.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

STUCK_AFTER_FAILURES = 3


class Streaks:
    def __init__(self, after: int = STUCK_AFTER_FAILURES) -> None:
        self.after = after
        self._streaks: dict[str, tuple[int, str]] = {}

    def failed(self, kind: str, line: str) -> None:
        count = self._streaks.get(kind, (0, ""))[0] + 1
        self._streaks[kind] = (count, line)
        if count == self.after:
            log.critical("tagger cannot make progress: %s", self._describe(count, line))

    def succeeded(self, kind: str) -> None:
        if self._streaks.pop(kind, (0, ""))[0] >= self.after:
            log.warning("tagger makes progress again (%s)", kind)

    @staticmethod
    def _describe(count: int, line: str) -> str:
        return f"{line} ({count} times in a row)"

    @property
    def problem(self) -> str | None:
        lines = [self._describe(count, line) for count, line in self._streaks.values()
                 if count >= self.after]
        return "; ".join(lines) or None
