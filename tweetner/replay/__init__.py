"""Replay and backfill: re-consume a topic range and store it again (see service.py)."""
from tweetner.replay.options import ReplayOptions, ReplaySummary
from tweetner.replay.service import ReplayError, ReplayService

__all__ = ["ReplayError", "ReplayOptions", "ReplayService", "ReplaySummary"]
