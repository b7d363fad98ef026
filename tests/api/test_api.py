"""The HTTP API through real HTTP: answers equal the sink's query functions, 4xx on bad input,
the OpenAPI document, and the pipeline figures from PostgreSQL and Kafka."""
from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta, timezone

import pytest

from contracts.messages import DeadLetter, Tweet
from contracts.topics import ensure_topics
from sink import trends
from sink.cache import TrendCache
from sink.store import TrendStore
from tests.api.conftest import Client, serve
from tests.sink.streams import tagged


def _store(engine, settings, tweets) -> None:
    store = TrendStore(engine, TrendCache(settings, engine))
    store.write(tweets)
    store.cache.close()


def _stream(now: datetime, prefix: str = "t") -> list:
    """Paris four times, Obama twice (person), Gurez once, all in the last few minutes."""
    rows = [("Paris", "geo-loc")] * 4 + [("Barack Obama", "person")] * 2 + [("Gurez", "geo-loc")]
    return [tagged(f"{prefix}{i}", now - timedelta(minutes=i % 3), [row])
            for i, row in enumerate(rows)]


def test_openapi_document_describes_every_endpoint(api: Client) -> None:
    doc = api.get("/openapi.json")
    assert doc.status == 200
    paths = doc.body["paths"]
    assert set(paths) >= {"/tag", "/trends", "/entities/{name}/timeline", "/pipeline", "/health"}
    assert "post" in paths["/tag"] and "413" in paths["/tag"]["post"]["responses"]
    params = {p["name"] for p in paths["/trends"]["get"]["parameters"]}
    # The parameters of `tweetner trends`, by the same names.
    assert params >= {"window", "label", "trending", "limit", "no_cache"}
    schemas = doc.body["components"]["schemas"]
    assert schemas["TagRequest"]["properties"]["texts"]["type"] == "array"
    assert set(schemas["TaggedEntity"]["properties"]) == {"start", "end", "text", "label", "score"}


def test_trends_answers_what_the_query_functions_answer(api: Client, engine, api_settings,
                                                        redis_client, now) -> None:
    _store(engine, api_settings, _stream(now))
    with engine.connect() as conn:
        top = trends.top_entities(conn, timedelta(minutes=15), None, 20)
        people = trends.top_entities(conn, timedelta(minutes=15), "person", 20)
        hot = trends.trending_entities(conn, timedelta(minutes=15), None, 20, min_count=1)
    assert [r.entity for r in top] == ["paris", "barack obama", "gurez"]
    for path, expected in [("/trends", top), ("/trends?no_cache=true", top),
                           ("/trends?label=person&window=15m", people),
                           ("/trends?trending=true&min_count=1", hot)]:
        reply = api.get(path)
        assert reply.status == 200, reply.body
        assert reply.body["rows"] == [r.to_dict() for r in expected], path
    limited = api.get("/trends?limit=1&window=1h")
    assert limited.body["rows"] == [{"entity": "paris", "label": "geo-loc", "count": 4,
                                     "score": 4.0}]
    assert limited.body["window_s"] == 3600 and limited.body["kind"] == "top"


@pytest.mark.parametrize("query, word", [
    ("window=abc", "window: not a duration"), ("window=0m", "window: must be above 0"),
    ("window=500d", "at most 400 days"), ("limit=0", "limit"), ("limit=501", "limit"),
    ("baseline=x", "baseline: not a duration"), ("trending=maybe", "trending"),
])
def test_trends_refuses_bad_parameters_with_422(api: Client, query: str, word: str) -> None:
    reply = api.get(f"/trends?{query}")
    assert reply.status == 422
    assert word in json.dumps(reply.body["detail"])


def test_timeline_counts_per_minute_zero_filled(api: Client, engine, api_settings, now) -> None:
    _store(engine, api_settings, _stream(now))
    reply = api.get("/entities/%23Paris/timeline?window=10m&label=geo-loc")
    assert reply.status == 200, reply.body
    body = reply.body
    assert body["entity"] == "paris" and body["bucket"] == "minute"
    counts = [b["count"] for b in body["buckets"]]
    assert len(counts) == 10 and sum(counts) == 4
    # Paris was written at now, now-1, now-2, now (i % 3 for i in 0..3): the last three minutes.
    assert counts[-3:] == [1, 1, 2]
    hours = api.get("/entities/paris/timeline?window=2d")
    assert hours.body["bucket"] == "hour" and sum(b["count"] for b in hours.body["buckets"]) == 4
    assert api.get("/entities/paris/timeline?window=2d&bucket=minute").status == 422
    assert api.get("/entities/paris/timeline?bucket=second").status == 422


def test_tag_returns_entities_with_offsets_batched(api: Client) -> None:
    texts = ["Barack Obama visits Paris", "no names in this one", "Watching the Yankees tonight"]
    reply = api.post("/tag", {"texts": texts})
    assert reply.status == 200, reply.body
    assert reply.body["model_name"] and reply.body["model_version"]
    results = reply.body["results"]
    assert len(results) == 3
    for text, result in zip(texts, results):
        for e in result["entities"]:
            assert text[e["start"]:e["end"]] == e["text"]
    assert {"text": "Barack Obama", "label": "person"}.items() <= results[0]["entities"][0].items()


@pytest.mark.parametrize("body, status, words", [
    ({"texts": ["a"] * 5}, 413, "5 texts is over the limit of 4"),
    ({"texts": ["fine", "x" * 301]}, 413, "texts[1]: 301 characters is over the limit of 300"),
    ({"texts": ["fine", "nul \u0000 here"]}, 422, "texts[1]: control character U+0000"),
    ({"texts": ["lone \ud800 surrogate"]}, 422, "texts[0]: unpaired surrogate U+D800"),
    ({"texts": []}, 422, "give at least one text"),
    ({"text": "not a list"}, 422, "texts"),
    ({"texts": "not a list"}, 422, "texts"),
])
def test_tag_limits_and_validation_are_clear_4xx(api: Client, body, status: int, words: str) -> None:
    reply = api.post("/tag", body)
    assert reply.status == status, reply.body
    assert words in json.dumps(reply.body["detail"], ensure_ascii=False)


def test_tag_refuses_an_oversized_body_before_reading_it(api: Client) -> None:
    reply = api.post("/tag", raw=json.dumps({"texts": ["y" * 100_000]}).encode())
    assert reply.status == 413 and "request body of" in reply.body["detail"]
    assert api.post("/tag", raw=b"{not json").status == 422


def test_pipeline_reports_stored_rates_and_latency(api: Client, engine, api_settings) -> None:
    now = datetime.now(timezone.utc)
    tweets = [t.model_copy(update={"ingested_at": now - timedelta(seconds=2)})
              for t in _stream(now)]
    _store(engine, api_settings, tweets)
    reply = api.get("/pipeline")
    assert reply.status == 200, reply.body
    store = reply.body["store"]
    assert store["tweets_stored"] == 7 and store["stored_last_minute"] == 7
    assert sum(m["stored"] for m in store["per_minute"]) == 7
    assert store["latency_p50_s"] >= 2.0 and store["last_stored_at"]
    assert reply.body["kafka"] is None  # no broker configured


def test_pipeline_reads_kafka_offsets_lag_and_dead_letters(api_settings, session_engine,
                                                           kafka_bootstrap: str) -> None:
    from kafka import KafkaProducer

    token = secrets.token_hex(3)
    settings = api_settings.with_(tweets_topic=f"api-{token}", tagged_topic=f"api-{token}.tagged",
                                  deadletter_topic=f"api-{token}.dead", topic_partitions=2)
    ensure_topics(kafka_bootstrap, settings.topics.all())
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(3):
        tweet = Tweet(id=f"k{i}", text="hello Paris", created_at=datetime.now(timezone.utc))
        producer.send(settings.tweets_topic, tweet.model_dump_json().encode(), key=b"k%d" % i)
    for reason in ("not JSON: line 1", "text: control character U+0000 at index 3"):
        letter = DeadLetter.for_payload("ingest", reason, b"bad", source="file.txt")
        producer.send(settings.deadletter_topic, letter.model_dump_json().encode())
    producer.flush()
    producer.close()
    server = serve(settings, kafka_bootstrap=kafka_bootstrap)
    try:
        kafka = Client(server.url).get("/pipeline").body["kafka"]
    finally:
        server.stop()
    assert kafka["reachable"], kafka
    assert kafka["ingested_total"] == 3 and kafka["tagged_total"] == 0
    assert kafka["dead_letters_total"] == 2
    assert {d["reason"] for d in kafka["recent_dead_letters"]} == {
        "not JSON: line 1", "text: control character U+0000 at index 3"}
    # No worker has committed anything: the tagger's group is behind by every tweet.
    lag = {g["group"]: g["lag"] for g in kafka["lag"]}
    assert lag == {"tweetner-tagger": 3, settings.sink_group: 0}


def test_unreachable_servers_are_answers_not_crashes(api_settings) -> None:
    dead_db = api_settings.with_(database_url="postgresql://postgres@127.0.0.1:1/test")
    server = serve(dead_db, use_cache=False, kafka_bootstrap="127.0.0.1:1")
    try:
        client = Client(server.url)
        reply = client.get("/trends")
        assert reply.status == 503
        assert reply.body["detail"].startswith("PostgreSQL is unavailable (")
        assert "\n" not in reply.body["detail"]
        assert client.get("/health").status == 503
    finally:
        server.stop()


def test_dashboard_page_is_served_and_needs_no_network(api: Client) -> None:
    page = api.get("/")
    assert page.status == 200 and "static/dashboard.js" in page.body
    for asset in ("static/dashboard.js", "static/dashboard.css"):
        reply = api.get(asset)
        assert reply.status == 200
        # Offline: nothing is fetched from anywhere but this server.
        assert "http" not in reply.body.replace("http://www.w3.org/2000/svg", "")
    assert "http" not in page.body


def test_tag_with_a_model_that_cannot_load_is_a_503_naming_it(api_settings, session_engine,
                                                              tmp_path) -> None:
    from tweetner.api.tagging import default_factory

    missing = str(tmp_path / "no-model-here")
    server = serve(api_settings, tagger_factory=default_factory(missing, "cpu", None))
    try:
        reply = Client(server.url).post("/tag", {"texts": ["Paris"]})
    finally:
        server.stop()
    assert reply.status == 503
    assert reply.body["detail"].startswith("cannot load the model for /tag (")
    assert "TAGGER_MODEL_DIR" in reply.body["detail"] and "\n" not in reply.body["detail"]
