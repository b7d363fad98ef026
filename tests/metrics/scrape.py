"""Reading a service's /metrics the way Prometheus does, with prometheus-client's parser."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """Every sample of one /metrics answer, by name and labels."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
        return sum(s.value for s in self.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    def labels(self, name: str) -> list[dict[str, str]]:
        return [s.labels for s in self.samples if s.name == name]


def scrape(base_url: str, timeout_s: float = 5.0) -> Scrape:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=timeout_s) as resp:  # noqa: S310
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return Scrape(resp.read().decode("utf-8"))


def health(base_url: str, timeout_s: float = 5.0) -> tuple[int, dict]:
    """(HTTP status, JSON body) of /health, 503 included."""
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=timeout_s) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
