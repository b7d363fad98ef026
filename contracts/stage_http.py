"""A stage's small HTTP port: ``/metrics`` (Prometheus text format) and ``/health``.

``/health`` answers 200 with ``{"status": "ok", "reason": null}`` or 503 with
``{"status": "unhealthy", "reason": "<one line>"}``; anything else is 404. The server runs in a
thread of its own (stdlib ``http.server``: two read-only pages need no framework); port 0 binds
a free port, read back from :attr:`StageHttpServer.port` after :meth:`start`.
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

Health = Callable[[], dict[str, Any]]


class StageHttpServer:
    """Serves ``metrics()`` at /metrics and ``health()`` at /health until :meth:`stop`."""

    def __init__(self, name: str, host: str, port: int, metrics: Callable[[], bytes],
                 health: Health) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._metrics = metrics
        self._health = health
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Binds now (an address in use fails here, with OSError naming it), serves in a thread."""
        server = ThreadingHTTPServer((self.host, self.port), self._handler())
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"{self.name}-http", daemon=True)
        self._thread.start()
        log.info("%s: /metrics and /health on %s", self.name, self.url)

    def start_or_explain(self, port_variable: str) -> str | None:
        """Starts the server; on a port that cannot be bound, the one-line error a stage's command
        prints (naming the address and the variable to change) instead of raising."""
        address = f"{self.host}:{self.port}"
        try:
            self.start()
        except OSError as exc:
            return (f"cannot serve /metrics and /health on {address} ({exc.strerror or exc}); "
                    f"free that port or set {port_variable}")
        return None

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            body = dict(self._health())
        except Exception as exc:  # noqa: BLE001 - a health check that breaks is itself the answer
            body = {"status": "unhealthy", "reason": f"health check failed: {exc!r}"[:500]}
        ok = body.get("status") == "ok"
        if body.get("reason"):
            body["reason"] = " ".join(str(body["reason"]).split())  # always one line
        return (200 if ok else 503), body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = self.path.split("?", 1)[0].rstrip("/") or "/"
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, outer._metrics())
                elif path == "/health":
                    status, body = outer.health()
                    self._send(status, "application/json",
                               (json.dumps(body) + "\n").encode("utf-8"))
                else:
                    self._send(404, "text/plain; charset=utf-8",
                               b"not found: try /metrics or /health\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("%s http: " + format, outer.name, *args)

        return Handler
