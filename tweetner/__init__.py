"""tweetner: streaming named-entity tagging of tweets into SQL-queryable trends.

This package holds what ties the stages together: the message schema shared by ingest, tagger
and sink, the command line, and the embedded stack used for one-command runs.
"""
