"""The bottom layer: what every stage agrees on and nothing else.

The messages that cross Kafka topics, the topic names, the settings base every stage's settings
extend, and logging set-up. Nothing here imports a stage (ingest, tagger, sink) or the
composition on top (tweetner); tests/test_layers.py keeps it that way.
"""
