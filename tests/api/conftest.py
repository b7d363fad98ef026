"""The API served over real HTTP (uvicorn on a free port) against the machine's PostgreSQL and
Redis, in the sink tests' per-session schema and key prefix."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from sink.settings import SinkSettings
from tests.sink.conftest import (base_settings, engine, kafka_bootstrap, now,  # noqa: F401
                                 redis_client, session_engine)
from tweetner.api.app import create_app
from tweetner.api.server import ApiServer
from tweetner.api.settings import ApiSettings


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


class Client:
    """Plain HTTP to the server (urllib): what any client of the API sends."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def request(self, method: str, path: str, body: Any = None, *,
                raw: bytes | None = None) -> Reply:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.base_url + path.lstrip("/"), data=data, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                return Reply(resp.status, _decode(resp.read(), resp.headers), dict(resp.headers))
        except urllib.error.HTTPError as err:
            return Reply(err.code, _decode(err.read(), err.headers), dict(err.headers))

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, body, **kwargs)


def _decode(raw: bytes, headers: Any) -> Any:
    if "json" in (headers.get("content-type") or ""):
        return json.loads(raw)
    return raw.decode("utf-8", errors="replace")


def serve(settings: SinkSettings, **kwargs: Any) -> ApiServer:
    api = ApiSettings.from_env({}, port=0, max_batch=4, max_text_chars=300, kafka_poll_s=0.2,
                              store_poll_s=0)
    server = ApiServer(create_app(settings, api, **kwargs), port=0)
    server.start()
    return server


@pytest.fixture(scope="session")
def api_settings(base_settings: SinkSettings) -> SinkSettings:  # noqa: F811
    # Cached answers live half a second, so a test that writes sees its rows on the next poll.
    return base_settings.with_(cache_ttl_s=0.5)


@pytest.fixture(scope="session")
def api(api_settings: SinkSettings, session_engine) -> Iterator[Client]:  # noqa: F811
    """The API over PostgreSQL and Redis, without Kafka; /tag runs the shipped model."""
    server = serve(api_settings)
    yield Client(server.url)
    server.stop()
