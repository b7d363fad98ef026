"""The top layer: the `tweetner` command and what composes the stages.

The command line, the embedded stack (`tweetner up`, `tweetner stack`), the child-process runner,
benchmarks, replay and `tweetner doctor`. Stages never import this package.
"""
