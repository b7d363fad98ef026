"""The dashboard in a real headless chromium: it loads, shows the entities a stream stored, and
its charts follow the tweets that arrive afterwards. Every step waits for a condition on the
page (playwright's expect), never for a fixed time."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest

from sink.cache import TrendCache
from sink.store import TrendStore
from tests.sink.streams import tagged

WAIT_MS = 60_000  # generous: the page polls every 500 ms, a loaded machine may be slow


def _stream(prefix: str, n: int, entities: list[tuple[str, str]]) -> list:
    now = datetime.now(timezone.utc)
    return [tagged(f"{prefix}{i}", now, entities) for i in range(n)]


@pytest.mark.timeout(1500)  # the first browser test may install chromium first
def test_dashboard_shows_stored_entities_and_updates_live(page, api, engine, api_settings,
                                                          redis_client) -> None:
    from playwright.sync_api import expect

    store = TrendStore(engine, TrendCache(api_settings, engine))
    store.write(_stream("a", 3, [("Gurez Valley", "geo-loc"), ("Imran Khan", "person")]))
    store.write(_stream("b", 2, [("Imran Khan", "person")]))

    origin = urlsplit(api.base_url).netloc
    outside: list[str] = []
    page.on("request", lambda r: None if urlsplit(r.url).netloc == origin else outside.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(api.base_url + "?refresh=500")

    top = page.locator("#top tbody")
    gurez = top.locator('tr[data-entity="gurez valley"]')
    expect(gurez.locator("td.count")).to_have_text("3", timeout=WAIT_MS)
    expect(top.locator('tr[data-entity="imran khan"] td.count')).to_have_text("5", timeout=WAIT_MS)
    expect(page.locator('[data-figure="tweets stored"] b')).to_have_text("5", timeout=WAIT_MS)

    # A label tab shows only that label's entities.
    page.locator('#labels button[data-label="person"]').click()
    expect(top.locator("tr")).to_have_count(1, timeout=WAIT_MS)
    expect(top.locator("tr").first).to_have_attribute("data-entity", "imran khan")
    page.locator('#labels button[data-label=""]').click()
    expect(gurez).to_be_visible(timeout=WAIT_MS)

    # Click an entity: its timeline is drawn, one bar per minute.
    gurez.click()
    chart = page.locator("#timeline svg")
    expect(chart).to_have_attribute("data-total", "3", timeout=WAIT_MS)
    expect(page.locator("#timeline-title")).to_contain_text("gurez valley")
    bars = int(chart.get_attribute("data-buckets") or 0)
    assert bars == 15 and page.locator("#timeline rect.bar").count() == bars

    # More tweets arrive: the chart, the table and the pipeline figures follow by themselves.
    store.write(_stream("c", 4, [("Gurez Valley", "geo-loc")]))
    expect(chart).to_have_attribute("data-total", "7", timeout=WAIT_MS)
    expect(gurez.locator("td.count")).to_have_text("7", timeout=WAIT_MS)
    expect(page.locator('[data-figure="tweets stored"] b')).to_have_text("9", timeout=WAIT_MS)
    expect(page.locator("#status")).not_to_have_class(re.compile("bad"))
    store.cache.close()

    assert outside == [], f"the page fetched from outside its server: {outside}"
    assert errors == []
