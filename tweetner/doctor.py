"""`tweetner doctor`: one line per thing a first run depends on, ok or what to do about it.

Each check returns a :class:`Finding`; nothing here changes the machine. Servers are checked
only at the address the environment names (``DATABASE_URL``, ``REDIS_URL``, ``KAFKA_BOOTSTRAP``);
where a variable is unset, the running embedded stack's address (``.state/stack.json``, as the
other commands find it) or else the default address is tried, and a miss at the default is
reported as a note, not a failure, since `tweetner up` starts its own embedded servers.
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping
from urllib.parse import urlsplit

OK, NOTE, FAIL = "ok", "note", "FAIL"


@dataclass(frozen=True)
class Finding:
    status: str  # OK, NOTE or FAIL
    what: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.what:<10} {self.detail}"


def check_python() -> Finding:
    version = platform.python_version()
    if sys.version_info < (3, 10):
        return Finding(FAIL, "python", f"{version}: tweetner needs Python 3.10 or newer")
    if sys.prefix == sys.base_prefix:
        return Finding(NOTE, "python", f"{version} at {sys.executable}, not in a virtual environment: "
                                       "`make install` creates .venv (then `source .venv/bin/activate`)")
    return Finding(OK, "python", f"{version}, virtual environment {sys.prefix}")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    try:
        with open(cpuinfo) as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def check_torch() -> Finding:
    try:
        import torch
    except ImportError:
        return Finding(FAIL, "torch", "not installed: `make install` puts the CPU build (torch==2.13.0) in .venv")
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU"
    if torch.cuda.is_available():
        return Finding(OK, "torch", f"{torch.__version__} ({build} build), GPU {torch.cuda.get_device_name(0)}: "
                                    "the tagger runs fp16 there")
    return Finding(OK, "torch", f"{torch.__version__} ({build} build), no GPU: the tagger runs on the CPU")


def check_cpu(flags: set[str] | None = None) -> Finding:
    from tagger.inference import default_precision

    flags = cpu_flags() if flags is None else flags
    model = platform.processor() or platform.machine()
    features = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni") if f in flags]
    precision = default_precision("cpu")
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        why = "bf16 has native instructions here (about 2x fp32)"
    else:
        why = "no avx512_bf16/amx_bf16: bf16 would be emulated (about 5x slower than fp32 on AVX2 CPUs)"
    forced = " (TWEETNER_CPU_PRECISION)" if "TWEETNER_CPU_PRECISION" in os.environ else ""
    return Finding(OK, "cpu", f"{model}, {os.cpu_count()} cores, {' '.join(features) or 'no AVX2'}; "
                              f"CPU precision {precision}{forced}: {why}")


def check_model(model_dir: str | None = None) -> Finding:
    try:
        from tagger.loading import load_tagger
    except ImportError as exc:
        return Finding(FAIL, "model", f"the tagger cannot be imported ({exc}): `make install`")
    started = time.monotonic()
    try:
        tagger = load_tagger(model_dir, device="cpu", precision="fp32")
        found = tagger.predict(["Taylor Swift played in London tonight"])[0]
    except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Finding(FAIL, "model", f"{model_dir or 'the shipped model'} does not load: {first}")
    seconds = time.monotonic() - started
    return Finding(OK, "model", f"{tagger.model_name} {tagger.model_version} loads and tags "
                                f"({len(found)} entities in a test sentence, {seconds:.1f}s)")


def _reach(host: str, port: int, timeout_s: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


@dataclass(frozen=True)
class EmbeddedStack:
    """What the embedded stack's state dir says (tweetner.stack's stack file): the URLs a
    running `tweetner up`/`tweetner stack` serves, or that one ran there and is stopped."""

    state_dir: str
    serving: dict[str, str]
    pid: int | None
    # Stopped, with PostgreSQL data that the database commands start for themselves.
    stopped_with_data: bool = False

    @property
    def origin(self) -> str:
        return f"the embedded stack in {self.state_dir}/, pid {self.pid}"


def find_embedded_stack(env: Mapping[str, str]) -> EmbeddedStack | None:
    from tweetner.stack import (DEFAULT_STATE_DIR, StackError, _pid_alive, embedded_postgres,
                                read_state_file)

    root = env.get("TWEETNER_STATE_DIR") or DEFAULT_STATE_DIR
    try:
        recorded = read_state_file(root)
    except StackError:
        return None
    if not recorded:
        return None
    pid = recorded.get("pid")
    if _pid_alive(pid):
        return EmbeddedStack(root, dict(recorded.get("env", {})), pid)
    has_data = (embedded_postgres(root).data_dir / "PG_VERSION").exists()
    return EmbeddedStack(root, {}, None, stopped_with_data=has_data)


def _server(what: str, variable: str, env: Mapping[str, str], default: str,
            probe: Callable[[str], str | None], stack: EmbeddedStack | None = None) -> Finding:
    configured = variable in env
    if not configured and stack is not None and stack.stopped_with_data and variable == "DATABASE_URL":
        # What `tweetner trends`/`replay`/`sink` would use (tweetner.stack.find_served_state).
        return Finding(NOTE, what, f"DATABASE_URL is not set: the database commands use the "
                                   f"embedded stack in {stack.state_dir}/, stopped with its data "
                                   "kept (`tweetner trends` starts its PostgreSQL by itself, "
                                   "`tweetner stack` serves it)")
    if not configured and stack is not None and stack.serving.get(variable):
        # No variable set: commands use the running embedded stack's servers (tweetner.cli).
        address = stack.serving[variable]
        problem = probe(address)
        if problem is None:
            return Finding(OK, what, f"reachable at {_redact(address)} ({stack.origin})")
        return Finding(FAIL, what, f"{variable} is not set and {stack.origin} names "
                                   f"{_redact(address)}, where {problem}; restart it "
                                   f"(`tweetner stack`) or set {variable}")
    address = env.get(variable, default)
    problem = probe(address)
    if problem is None:
        return Finding(OK, what, f"reachable at {_redact(address)}")
    if not configured:
        return Finding(NOTE, what, f"{variable} is not set and nothing answers at the default "
                                   f"{_redact(address)} ({problem}); `tweetner up` starts its own")
    return Finding(FAIL, what, f"{variable}={_redact(address)}: {problem}")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def _probe_postgres(url: str) -> str | None:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from sink.db import make_engine
    from sink.settings import SinkSettings

    try:
        engine = make_engine(SinkSettings(database_url=url))
    except (SQLAlchemyError, ValueError) as exc:
        return f"not a PostgreSQL URL ({exc})"
    except ImportError as exc:
        return f"its driver is not installed ({exc.name}); use postgresql+psycopg2://..."
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        return str(orig).strip().splitlines()[0]
    finally:
        engine.dispose()


def _probe_redis(url: str) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    except ValueError as exc:
        return f"not a Redis URL ({exc})"
    try:
        client.ping()
        return None
    except redis.RedisError as exc:
        return str(exc).strip().splitlines()[0]
    finally:
        client.close()


def _probe_kafka(bootstrap: str) -> str | None:
    # A TCP connect to each bootstrap address: enough to tell "nothing there" from "there",
    # without kafka-python's 30 s of retries and log lines.
    problems = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            return f"{server!r} is not host:port"
        problem = _reach(host.strip("[]"), int(port), 3.0)
        if problem is None:
            return None
        problems.append(f"{server}: {problem}")
    return "; ".join(problems)


def run_checks(env: Mapping[str, str], model_dir: str | None = None) -> Iterator[Finding]:
    """The checks in order, each yielded as soon as it is done (the model load takes seconds)."""
    from sink.settings import SinkSettings
    from contracts.topics import DEFAULT_BOOTSTRAP

    defaults = SinkSettings()
    yield check_python()
    yield check_torch()
    yield check_cpu()
    yield check_model(model_dir)
    stack = find_embedded_stack(env)
    yield _server("postgres", "DATABASE_URL", env, defaults.database_url, _probe_postgres, stack)
    yield _server("redis", "REDIS_URL", env, defaults.redis_url, _probe_redis, stack)
    yield _server("kafka", "KAFKA_BOOTSTRAP", env, DEFAULT_BOOTSTRAP, _probe_kafka, stack)


def _cmd_doctor(args: argparse.Namespace) -> int:
    findings = []
    for finding in run_checks(os.environ, args.model):
        print(finding.line(), flush=True)
        findings.append(finding)
    counts = {status: sum(f.status == status for f in findings) for status in (OK, NOTE, FAIL)}
    print(f"doctor: {counts[OK]} ok, {counts[NOTE]} notes, {counts[FAIL]} to fix")
    return 1 if counts[FAIL] else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check Python, torch, the CPU, the model and the servers, one line each")
    p.add_argument("--model", default=None, help="model directory to check (default: the shipped model)")
    p.set_defaults(func=_cmd_doctor)
