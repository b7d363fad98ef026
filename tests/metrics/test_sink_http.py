"""The sink's HTTP port on the real servers: /metrics parses as Prometheus text and its counters
follow a stream; /health is 503 with a one-line reason while PostgreSQL is unreachable."""
from __future__ import annotations

from sink.consumer import SinkService
from sink.http import sink_http_server
from tests.metrics.scrape import health, scrape
from tests.pipeline.helpers import wait_for
from tests.sink.tcp_proxy import TcpProxy
from tests.sink.test_consumer import _produce, _records


def test_sink_metrics_follow_a_stream(engine, topics, now, redis_client):
    s = topics.with_(http_port=0)
    _produce(s, _records(now, 60) + [b"{not json"])
    service = SinkService(s)
    http = sink_http_server(service)
    assert http is not None
    http.start()
    try:
        before = scrape(http.url)
        assert before.value("tweetner_sink_tweets_in_total") == 0
        assert health(http.url) == (200, {"status": "ok", "reason": None})
        service.start(idle_exit_s=600)
        wait_for(lambda: scrape(http.url).value("tweetner_sink_tweets_in_total") >= 61, 60,
                 "the stream to be stored")
        after = scrape(http.url)
        assert after.value("tweetner_sink_tweets_in_total") == 61
        assert after.value("tweetner_sink_tweets_out_total", model_name="test-model",
                           model_version="v1") == 60
        assert after.value("tweetner_sink_tweets_stored_total", outcome="inserted") == 60
        assert after.value("tweetner_sink_dead_letters_total", reason="invalid TaggedTweet") == 1
        assert after.value("tweetner_sink_batch_latency_seconds_count") >= 1
        assert after.value("tweetner_sink_healthy") == 1
        # Lag per partition of the tagged topic, 0 once everything read is stored.
        lag = scrape(http.url).labels("tweetner_sink_consumer_lag")
        assert {(l["topic"], l["partition"]) for l in lag} <= {
            (s.tagged_topic, str(p)) for p in range(3)} and lag
        wait_for(lambda: scrape(http.url).value("tweetner_sink_consumer_lag") == 0, 30,
                 "the lag to reach 0 once everything read is stored")
    finally:
        service.stop(join_timeout_s=20)
        http.stop()


def test_sink_health_is_503_while_postgres_is_unreachable(engine, topics, now, redis_client):
    proxy = TcpProxy(("127.0.0.1", 5432))  # closed: connections are refused
    s = topics.with_(http_port=0, database_url=topics.database_url.replace(
        "127.0.0.1:5432", f"127.0.0.1:{proxy.port}"))
    _produce(s, _records(now, 20))
    service = SinkService(s)
    http = sink_http_server(service)
    assert http is not None
    http.start()
    thread = service.start(idle_exit_s=2.0)
    try:
        wait_for(lambda: health(http.url)[0] == 503, 60, "/health to answer 503")
        status, body = health(http.url)
        assert body["status"] == "unhealthy"
        assert body["reason"].startswith("PostgreSQL write failed")
        assert f"{s.tagged_topic}/" in body["reason"] and "\n" not in body["reason"]
        down = scrape(http.url)
        assert down.value("tweetner_sink_healthy") == 0
        assert down.value("tweetner_sink_write_failures_total") >= 3
        assert down.value("tweetner_sink_tweets_in_total") == 0
        proxy.open()
        wait_for(lambda: health(http.url)[0] == 200, 60, "/health to recover")
        thread.join(60)
        assert scrape(http.url).value("tweetner_sink_tweets_out_total") == 20
    finally:
        service.stop(join_timeout_s=10)
        http.stop()
        proxy.close()
