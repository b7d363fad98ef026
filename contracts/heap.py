"""The garbage collector's settings for a long-running stage process (ingest, tagger, sink).

Every record a stage handles allocates a few dozen short-lived containers (parsed JSON, pydantic
models, row tuples), so CPython's default young-generation threshold (700 allocations) runs a
collection every few records, and each older collection walks the whole start-up heap (Kafka
clients, SQLAlchemy, pydantic schemas, the model's modules), which never becomes garbage. Settling
both took 30-36% off the sink's CPU per tweet and 23-29% off the tagger worker's in the stand-in
pipeline benchmark (docs/benchmarks.md, "The garbage collector in every stage process").
"""
from __future__ import annotations

import gc

# Young collections per this many net container allocations: one per batch or so instead of
# one per record; a batch's garbage is a few MB at most, so memory barely moves.
YOUNG_THRESHOLD = 20_000
# Older collections five times rarer, relative to young ones, than CPython's defaults (10, 10).
OLDER_THRESHOLDS = (50, 50)


def settle_after_start_up() -> None:
    """Move everything allocated so far out of the collector's sight (``gc.freeze``) and collect
    young objects less often. Call once the stage is set up, just before its loop; calling it
    again later freezes what was added meanwhile, which is harmless."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
