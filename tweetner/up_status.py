"""`tweetner up`'s running display: progress, the health of every tagger worker and of the sink
(from their /health pages), and the top entities.

On a terminal the display is one rich table redrawn in place; piped (or with ``TERM=dumb``) it
is plain lines, a block per refresh, so logs and CI output stay readable.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import IO, Any, Sequence

from sink.trends import format_table


@dataclass(frozen=True)
class StageHealth:
    name: str
    status: str  # ok, unhealthy, starting, down (no answer)
    reason: str | None = None

    def line(self) -> str:
        return f"{self.name} {self.status}" + (f" ({self.reason})" if self.reason else "")


def stage_health(procs: Any) -> list[StageHealth]:
    """Each tagger worker's and the sink's health, from their HTTP ports."""
    out = []
    for worker, answer in zip(procs.workers, procs.worker_health()):
        out.append(_health(worker.name, answer))
    if procs.sink is not None:
        out.append(_health("sink", procs.sink_health()))
    return out


def health_line(health: Sequence[StageHealth]) -> str:
    return "health: " + ", ".join(h.line() for h in health)


def _health(name: str, answer: dict | None) -> StageHealth:
    if answer is None:
        return StageHealth(name, "down", "no answer on its health port")
    return StageHealth(name, str(answer.get("status", "?")), answer.get("reason"))


class StatusView:
    """Shows :meth:`update`'s figures: redrawn in place on a terminal, else plain lines."""

    def __init__(self, stream: IO[str] | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self._live: Any = None
        self._last_health: list[StageHealth] | None = None

    def start(self) -> None:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            # live=True means a terminal, also when the stream does not say so (tests).
            self._live = Live(console=Console(file=self.stream, force_terminal=True), auto_refresh=False,
                              transient=False, redirect_stdout=False, redirect_stderr=False)
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def update(self, progress: str, health: Sequence[StageHealth], top: Sequence[Any]) -> None:
        if self._live is not None:
            self._live.update(self._renderable(progress, health, top), refresh=True)
            return
        lines = [f"\n{progress}"]
        # Piped output repeats health only when it changed, so a log shows each change once.
        if list(health) != self._last_health:
            lines.append(health_line(health))
            self._last_health = list(health)
        lines.append(format_table(top))
        print("\n".join(lines), file=self.stream, flush=True)

    @staticmethod
    def _renderable(progress: str, health: Sequence[StageHealth], top: Sequence[Any]) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        stages = Table(title=None, show_edge=False, pad_edge=False)
        stages.add_column("stage")
        stages.add_column("health")
        stages.add_column("why", overflow="fold")
        for h in health:
            style = {"ok": "green", "starting": "yellow"}.get(h.status, "bold red")
            stages.add_row(h.name, Text(h.status, style=style), h.reason or "")
        entities = Table(show_edge=False, pad_edge=False)
        for column in ("#", "entity", "label", "count", "score"):
            entities.add_column(column, justify="right" if column in ("#", "count", "score")
                                else "left")
        for i, row in enumerate(top, 1):
            entities.add_row(str(i), row.entity, row.label, str(row.count), f"{row.score:.2f}")
        return Group(Text(progress), stages, entities)
