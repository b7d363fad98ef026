from __future__ import annotations

from sqlalchemy import text

from sink.writer import MentionWriter
from tests.sink.streams import ago, dump_tables, tagged


def _bucket_mismatches(engine) -> list[tuple]:
    """Rows where trend_minute disagrees with a recount of current mentions (should be none)."""
    sql = """
        WITH recount AS (
            SELECT bucket_start, label, normalized AS entity, count(*) AS n
            FROM current_mentions WHERE normalized <> '' GROUP BY 1, 2, 3)
        SELECT * FROM recount r FULL JOIN trend_minute t USING (bucket_start, label, entity)
        WHERE r.n IS DISTINCT FROM t.count
        UNION ALL
        SELECT date_trunc('hour', bucket_start), label, entity, sum(count), null FROM trend_minute
        GROUP BY 1, 2, 3
        EXCEPT ALL SELECT bucket_start, label, entity, count, null FROM trend_hour
    """
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def test_insert_counts_and_buckets(engine, now):
    w = MentionWriter(engine)
    recs = [tagged("1", ago(now, 1), [("Disney World", "location"), ("#DisneyWorld", "location")]),
            tagged("2", ago(now, 1), [("disney world", "location"), ("Taylor Swift", "person")]),
            tagged("3", ago(now, 2), [])]
    r = w.write(recs)
    assert (r.tweets_inserted, r.tweets_unchanged, r.tweets_replaced) == (3, 0, 0)
    assert r.mentions_inserted == 4
    deltas = {(d.label, d.entity, d.bucket_start.minute): d.delta for d in r.deltas}
    assert deltas == {("location", "disney world", ago(now, 1).minute): 3,
                      ("person", "taylor swift", ago(now, 1).minute): 1}
    assert _bucket_mismatches(engine) == []


def test_same_records_twice_change_nothing(engine, now):
    w = MentionWriter(engine)
    recs = [tagged(str(i), ago(now, i % 7), [("Paris", "location"), (f"Person {i % 3}", "person")])
            for i in range(50)]
    w.write(recs)
    before = dump_tables(engine)
    r = w.write(recs)
    assert (r.tweets_inserted, r.tweets_unchanged, r.mentions_inserted, r.deltas) == (0, 50, 0, [])
    w.write(list(reversed(recs[:20])))
    assert dump_tables(engine) == before


def test_duplicates_within_a_batch(engine, now):
    w = MentionWriter(engine)
    rec = tagged("d", ago(now, 3), [("Paris", "location")])
    rec.entities.append(rec.entities[0].model_copy())  # the same span twice in one record
    r = w.write([rec, rec.model_copy(), rec])
    assert (r.tweets_inserted, r.mentions_inserted) == (1, 1)
    assert [d.delta for d in r.deltas] == [1]
    assert _bucket_mismatches(engine) == []


def test_new_model_version_replaces_mentions_and_fixes_buckets(engine, now):
    w = MentionWriter(engine)
    w.write([tagged("a", ago(now, 5), [("Apple", "org"), ("Paris", "location")]),
             tagged("b", ago(now, 5), [("Apple", "org")])])
    r = w.write([tagged("a", ago(now, 5), [("Apple", "org"), ("Tim Cook", "person")], version="v2")])
    assert (r.tweets_replaced, r.mentions_inserted) == (1, 2)
    got = {(d.label, d.entity): d.delta for d in r.deltas}
    # Apple is in both versions: its bucket is untouched; Paris leaves, Tim Cook enters.
    assert got == {("location", "paris"): -1, ("person", "tim cook"): 1}
    assert _bucket_mismatches(engine) == []
    with engine.connect() as conn:
        buckets = dict(conn.execute(text("SELECT entity, count FROM trend_minute")).all())
        versions = conn.execute(text("SELECT count(DISTINCT model_version) FROM mentions")).scalar()
    assert buckets == {"apple": 2, "tim cook": 1}
    assert versions == 2  # v1 mentions are kept, just no longer counted

    # Same version again: a no-op, byte for byte.
    before = dump_tables(engine)
    r = w.write([tagged("a", ago(now, 5), [("Apple", "org"), ("Tim Cook", "person")], version="v2")])
    assert (r.tweets_unchanged, r.deltas) == (1, [])
    assert dump_tables(engine) == before

    # Back to v1 (stored mentions are reused), then a batch holding v1 then v3 of one tweet.
    w.write([tagged("a", ago(now, 5), [("Apple", "org"), ("Paris", "location")])])
    assert _bucket_mismatches(engine) == []
    w.write([tagged("b", ago(now, 5), [("Apple", "org")], version="v2"),
             tagged("b", ago(now, 5), [("Apple Inc", "org")], version="v3")])
    assert _bucket_mismatches(engine) == []
    with engine.connect() as conn:
        buckets = dict(conn.execute(text("SELECT entity, count FROM trend_minute")).all())
    assert buckets == {"apple": 1, "paris": 1, "apple inc": 1}


def test_bucket_counts_equal_mention_counts_on_a_mixed_stream(engine, now):
    w = MentionWriter(engine)
    names = [("Obama", "person"), ("#NewYork", "location"), ("new york", "location"), ("NASA", "org")]
    batch = [tagged(f"t{i}", ago(now, i % 90), [names[i % 4], names[(i * 7) % 4]],
                    version="v1" if i % 5 else "v0") for i in range(300)]
    w.write(batch[:150])
    w.write(batch[100:])
    w.write([tagged(f"t{i}", ago(now, i % 90), [names[(i + 1) % 4]], version="v9")
             for i in range(0, 300, 3)])
    assert _bucket_mismatches(engine) == []
