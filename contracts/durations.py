"""Durations as people type them on a command line: ``90s``, ``15m``, ``2h``, ``7d``, ``1w``."""
from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*")


def parse_duration(value: str, default_unit: str | None = "m") -> timedelta | None:
    """The duration ``value`` names, or None when it is not one. A bare number is in
    ``default_unit``; with ``default_unit=None`` a unit is required."""
    m = _DURATION.fullmatch(value)
    if not m or (not m.group(2) and default_unit is None):
        return None
    return timedelta(**{_UNITS[m.group(2) or default_unit]: float(m.group(1))})
