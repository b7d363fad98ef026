"""Where raw records come from: files (JSON Lines or plain text), stdin, a growing file.

A source yields :class:`RawRecord` s, raw bytes with their position, and never interprets them:
validation decides what is a tweet, so that every rejected line can name its file and line.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Literal

Format = Literal["jsonl", "text"]
_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}


@dataclass(frozen=True)
class RawRecord:
    source: str  # file path as given, or "stdin"
    line: int  # 1-based
    data: bytes  # the line without its line terminator
    fmt: Format

    @property
    def position(self) -> str:
        return f"{self.source}:{self.line}"


def guess_format(path: str | None, first_line: bytes | None) -> Format:
    if path and Path(path).suffix.lower() in _JSONL_SUFFIXES:
        return "jsonl"
    if path and Path(path).suffix.lower() == ".txt":
        return "text"
    # stdin or an unknown suffix: a JSON object on the first non-blank line means JSON Lines.
    return "jsonl" if first_line is not None and first_line.lstrip().startswith(b"{") else "text"


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


def _lines(stream: BinaryIO, *, follow: bool, poll_s: float,
           stop: threading.Event | None) -> Iterator[bytes]:
    """Complete lines of ``stream``; with ``follow``, waits for more at EOF until ``stop``."""
    pending = b""
    while True:
        chunk = stream.readline()
        if chunk:
            pending += chunk
            if pending.endswith(b"\n"):
                yield pending
                pending = b""
            continue
        # EOF. A partial last line is only final when we are not following the file.
        if not follow or (stop is not None and stop.is_set()):
            if pending:
                yield pending
            return
        time.sleep(poll_s)


def read_source(path: str | None, *, fmt: Format | None = None, follow: bool = False,
                poll_s: float = 0.5, stop: threading.Event | None = None) -> Iterator[RawRecord]:
    """Records of one file (``None`` or ``"-"`` = stdin)."""
    use_stdin = path in (None, "-")
    name = "stdin" if use_stdin else str(path)
    stream: BinaryIO = sys.stdin.buffer if use_stdin else open(path, "rb")  # type: ignore[arg-type]
    try:
        chosen = fmt
        for n, line in enumerate(_lines(stream, follow=follow, poll_s=poll_s, stop=stop), start=1):
            if stop is not None and stop.is_set():
                return
            data = _strip_eol(line)
            if chosen is None and data.strip():
                chosen = guess_format(None if use_stdin else path, data)
            yield RawRecord(name, n, data, chosen or "text")
    finally:
        if not use_stdin:
            stream.close()


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Files named directly, plus the files of named directories in name order."""
    out: list[str] = []
    for item in inputs:
        if item != "-" and os.path.isdir(item):
            out.extend(str(p) for p in sorted(Path(item).iterdir())
                       if p.is_file() and not p.name.startswith("."))
        else:
            out.append(item)
    return out


def read_sources(paths: Iterable[str], **kwargs: object) -> Iterator[RawRecord]:
    for path in expand_inputs(paths):
        yield from read_source(path, **kwargs)  # type: ignore[arg-type]
