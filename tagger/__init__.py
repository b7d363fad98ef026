"""Span-marker named-entity tagger for tweets."""
