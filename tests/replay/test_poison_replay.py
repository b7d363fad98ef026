"""`tweetner replay` over a topic that opens with poison records: each is a dead letter with a
reason, every clean tweet is stored, and the replay exits 0."""
from __future__ import annotations

from sqlalchemy import text

from tests.replay.helpers import produce, replay, tagged, tweets
from tests.sink.test_poison import POISON


def test_replay_of_a_poisoned_topic_stores_the_clean_tweets(replay_env, capsys):
    env = replay_env
    good = [tagged(t) for t in tweets(8)]
    produce(env.bootstrap, env.tagged_topic, [*POISON, *good])

    summary = replay(capsys, "--topic", env.tagged_topic, "--from-offsets", "all")

    assert summary["dead_letters"] == len(POISON) and summary["tweets_inserted"] == 8
    with env.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tweets")).scalar() == 8
