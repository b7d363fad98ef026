"""`tweetner dashboard`: the HTTP API and the live dashboard over the embedded stack's data (or
the servers DATABASE_URL, REDIS_URL and KAFKA_BOOTSTRAP name)."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def add_commands(sub: argparse._SubParsersAction) -> None:
    dash = sub.add_parser(
        "dashboard", help="serve the live dashboard and the HTTP API",
        description="Serve the dashboard (/) and the HTTP API (/tag, /trends, "
                    "/entities/NAME/timeline, /pipeline; OpenAPI at /openapi.json, docs at "
                    "/docs). With no DATABASE_URL it reads the embedded stack's database, like "
                    "`tweetner trends`. Kafka figures (rates, lag, dead letters) need "
                    "KAFKA_BOOTSTRAP or a running `tweetner up`/`stack`.")
    dash.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1, "
                                                   "TWEETNER_API_HOST)")
    dash.add_argument("--port", type=int, default=None,
                      help="port (default 8700, TWEETNER_API_PORT; 0 picks a free one)")
    dash.add_argument("--no-cache", action="store_true", help="ask PostgreSQL, not Redis")
    dash.set_defaults(func=run_dashboard)


def serve(host: str | None = None, port: int | None = None, *,
          use_cache: bool = True, env: dict[str, str] | None = None):
    """The started :class:`ApiServer` over the servers ``env`` (default os.environ) names."""
    from sink.settings import SinkSettings
    from tweetner.api.app import create_app
    from tweetner.api.server import ApiServer
    from tweetner.api.settings import ApiSettings

    env = dict(os.environ if env is None else env)
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    api = ApiSettings.from_env(env, **overrides)
    app = create_app(SinkSettings.from_env(env), api, use_cache=use_cache,
                     kafka_bootstrap=env.get("KAFKA_BOOTSTRAP") or None)
    server = ApiServer(app, api.host, api.port)
    server.start()
    return server


def run_dashboard(args: argparse.Namespace) -> int:
    from tweetner.stack_cli import _quiet_clients

    _quiet_clients()  # the Kafka figures' clients log every connection at INFO
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server = serve(args.host, args.port, use_cache=not args.no_cache)
    except OSError as exc:
        port = args.port if args.port is not None else os.environ.get("TWEETNER_API_PORT", 8700)
        print(f"tweetner dashboard: cannot listen on port {port} ({exc.strerror or exc}); "
              "pick another with --port", file=sys.stderr)
        return 1
    print(f"dashboard: {server.url}  (API docs: {server.url}docs, OpenAPI: "
          f"{server.url}openapi.json); Ctrl-C stops", flush=True)
    try:
        stop.wait()
    finally:
        server.stop()
    return 0
