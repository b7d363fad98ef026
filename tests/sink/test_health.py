"""The sink says when it cannot make progress: repeated failures on one batch make it unhealthy
with a one-line reason naming the offset, and a stored batch makes it healthy again."""
from __future__ import annotations

from sink.consumer import SinkService
from tests.pipeline.helpers import wait_for
from tests.sink.test_consumer import _produce, _records, topics
from tests.sink.tcp_proxy import TcpProxy

__all__ = ["topics"]  # the fixture, shared with test_consumer


def test_repeated_failures_on_one_batch_are_unhealthy_until_it_is_stored(engine, topics, now,
                                                                         redis_client):
    proxy = TcpProxy(("127.0.0.1", 5432))  # closed: connections are refused
    s = topics.with_(database_url=topics.database_url.replace(
        "127.0.0.1:5432", f"127.0.0.1:{proxy.port}"))
    _produce(s, _records(now, 20))
    service = SinkService(s)
    thread = service.start(idle_exit_s=2.0)
    try:
        assert service.health()["status"] == "ok"
        wait_for(lambda: service.health()["status"] == "unhealthy", 60, "the sink to say it is stuck")
        reason = service.health()["reason"]
        assert reason.startswith("PostgreSQL write failed") and f"{s.tagged_topic}/" in reason
        assert "\n" not in reason
        proxy.open()
        thread.join(60)
        assert not thread.is_alive()
        assert service.health() == {"status": "ok", "reason": None}
    finally:
        service.stop(join_timeout_s=10)
        proxy.close()
