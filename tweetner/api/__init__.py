"""The HTTP API (FastAPI, OpenAPI at /openapi.json, docs at /docs) and the live dashboard it serves.

Top layer: it reads through the sink's query functions (sink.trends, sink.cache) and tags through
the model library's loader; no stage imports it. ``tweetner dashboard`` serves it on its own,
``tweetner up`` beside the pipeline.
"""
