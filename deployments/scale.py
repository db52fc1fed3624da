"""The scale-out Prefect tier on one machine: PostgreSQL + Redis + N Prefect API processes
(webserver only) + exactly one Prefect services process, as Prefect documents for
horizontal scaling.

Every Prefect process gets the same settings (``prefect_settings``): the PostgreSQL
database, Redis for events messaging, the messaging cache, causal ordering and
concurrency leases, a database pool sized so that all processes together stay under
PostgreSQL's ``max_connections``, migrations off (they run once, before anything starts),
and the server auth string. Docket (Prefect's background task queue) stays in memory in
each process: API processes sharing the services' Docket in Redis can drop the perpetual
services' runs (late runs, the triggers that our crash automation needs).

PostgreSQL and Redis come from ``DRAGONFLOW_DATABASE_URL`` / ``DRAGONFLOW_REDIS_URL`` when
set; otherwise they are started here from the Debian packages, with their state under
``DRAGONFLOW_HOME`` (``postgres/``, ``redis/``). PostgreSQL refuses to run as root: as
root it runs as the ``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from deployments.local import free_port
from deployments.server import api_url_for, is_healthy, retention_env, stop, wait_until
from flows.settings import Settings

POSTGRES_BIN = Path("/usr/lib/postgresql")
MAX_CONNECTIONS = 200
SPARE_CONNECTIONS = 20  # left for psql, migrations and monitoring
REDIS_BROKER = "prefect_redis.messaging"


def postgres_tool(name: str) -> str:
    """A PostgreSQL server program (Debian keeps them out of PATH)."""
    found = shutil.which(name) or next(iter(sorted(POSTGRES_BIN.glob(f"*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found: install Debian's postgresql package"
                           " or set DRAGONFLOW_DATABASE_URL")
    return str(found)


def _as_postgres_user() -> dict[str, object]:
    """Popen arguments that run a PostgreSQL program as ``postgres`` when we are root."""
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}


def postgres_data_dir(home: Path) -> Path:
    """``home/postgres``, made for PostgreSQL's user. As root, when that user cannot reach
    ``home`` (e.g. under /root), the data lives in /var/lib/dragonflow/postgres-<hash of
    home> instead, and ``home/postgres`` links to it."""
    link = home / "postgres"
    if os.geteuid() != 0:
        link.mkdir(parents=True, exist_ok=True)
        return link
    user = pwd.getpwnam("postgres")
    data = link if _reachable_by_others(home) else (
        Path("/var/lib/dragonflow") / f"postgres-{hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]}")
    data.mkdir(parents=True, exist_ok=True)
    os.chown(data, user.pw_uid, user.pw_gid)
    if data != link and not link.is_symlink():
        link.symlink_to(data)
    return data


def _reachable_by_others(path: Path) -> bool:
    """Whether every directory down to ``path`` lets other users through."""
    return all(os.stat(part).st_mode & 0o001 for part in [*path.resolve().parents, path.resolve()])


def pool_settings(processes: int) -> dict[str, str]:
    """Database pool per Prefect process so that ``processes`` of them fit in PostgreSQL."""
    per_process = max(4, (MAX_CONNECTIONS - SPARE_CONNECTIONS) // processes)
    pool = per_process // 2
    return {"PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": str(pool),
            "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": str(per_process - pool)}


def auth_string(home: Path) -> str:
    """The Prefect server auth string (``admin:<random>``), made once and kept in
    ``home/prefect-auth`` (mode 600)."""
    path = home / "prefect-auth"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(f"admin:{secrets.token_urlsafe(24)}")
    return path.read_text().strip()


@dataclass
class PrefectTier:
    """PostgreSQL, Redis, ``api_processes`` Prefect API processes and one services process."""

    settings: Settings
    api_processes: int = 2
    first_port: int = 4200
    host: str = "127.0.0.1"
    ports: list[int] = field(default_factory=list)
    database_url: str = ""
    redis_url: str = ""
    postgres: subprocess.Popen | None = None
    redis: subprocess.Popen | None = None
    apis: list[subprocess.Popen | None] = field(default_factory=list)
    services: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.home = self.settings.home
        self.ports = [self.first_port] + [free_port() for _ in range(self.api_processes - 1)]
        self.auth = auth_string(self.home)
        self.apis = [None] * self.api_processes

    @property
    def api_urls(self) -> list[str]:
        return [api_url_for(port, self.client_host) for port in self.ports]

    @property
    def client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "127.0.0.1") else self.host

    def prefect_settings(self) -> dict[str, str]:
        """The environment every Prefect process of the tier shares."""
        return {
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url,
            "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",
            "PREFECT_MESSAGING_BROKER": REDIS_BROKER,
            "PREFECT_MESSAGING_CACHE": REDIS_BROKER,
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
            "PREFECT_REDIS_MESSAGING_URL": self.redis_url,
            "PREFECT_SERVER_DOCKET_URL": "memory://",
            "PREFECT_SERVER_API_AUTH_STRING": self.auth,
            "PREFECT_API_AUTH_STRING": self.auth,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_HOME": str(self.home / "prefect"),
            **pool_settings(self.api_processes + 1),
        }

    def client_settings(self, replica: int) -> dict[str, str]:
        """What a client (our API, a worker) of replica ``replica`` needs (and the Redis
        that our API processes share the VimQu rate limit in)."""
        return {"PREFECT_API_URL": self.api_urls[replica % self.api_processes], "PREFECT_API_AUTH_STRING": self.auth,
                "DRAGONFLOW_REDIS_URL": self.redis_url,
                # A state change whose event cannot reach Redis (restarting) is rolled back
                # and answered 500: proposing it again is safe, and nothing is lost.
                "PREFECT_CLIENT_RETRY_EXTRA_CODES": "500"}

    def _env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.prefect_settings(), **extra}

    def _log(self, name: str):
        return open(self.home / f"{name}.log", "ab")

    # PostgreSQL and Redis ------------------------------------------------------------
    def start_postgres(self, port: int | None = None) -> subprocess.Popen | None:
        """Use DRAGONFLOW_DATABASE_URL, or start a local PostgreSQL (on a free port)."""
        if self.settings.database_url:
            self.database_url = self.settings.database_url
            return None
        data = postgres_data_dir(self.home)
        port = port or free_port()
        if not (data / "PG_VERSION").exists():
            initdb = subprocess.run(
                [postgres_tool("initdb"), "-D", str(data), "-U", "prefect", "--auth=trust", "-E", "UTF8"],
                capture_output=True, text=True, cwd=data, **_as_postgres_user())
            if initdb.returncode:
                raise RuntimeError(f"initdb {data}: {initdb.stderr.strip()}")
        self.postgres = subprocess.Popen(
            [postgres_tool("postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={data}", "-c", f"max_connections={MAX_CONNECTIONS}"],
            stdout=self._log("postgres"), stderr=subprocess.STDOUT, cwd=data, **_as_postgres_user())
        ready = [postgres_tool("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
        wait_until(lambda: subprocess.run(ready).returncode == 0, "PostgreSQL", 60, self.postgres)
        created = subprocess.run([postgres_tool("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "prefect",
                                  "prefect"], capture_output=True, text=True)
        if created.returncode and "already exists" not in created.stderr:
            raise RuntimeError(f"createdb: {created.stderr.strip()}")
        self.database_url = f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect"
        return self.postgres

    def restart_postgres(self) -> subprocess.Popen | None:
        """Start the local PostgreSQL again on its port (after it died)."""
        stop([self.postgres] if self.postgres else [])
        return self.start_postgres(_port_of(self.database_url))

    def start_redis(self, port: int | None = None) -> subprocess.Popen | None:
        """Use DRAGONFLOW_REDIS_URL, or start a local Redis (append-only file under home)."""
        if self.settings.redis_url:
            self.redis_url = self.settings.redis_url
            return None
        port = port or free_port()
        data = self.home / "redis"
        data.mkdir(parents=True, exist_ok=True)
        redis_server = shutil.which("redis-server")
        if not redis_server:
            raise RuntimeError("redis-server not found: install Debian's redis-server package or set DRAGONFLOW_REDIS_URL")
        self.redis = subprocess.Popen(
            [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec"],
            stdout=self._log("redis"), stderr=subprocess.STDOUT)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        wait_until(lambda: _redis_answers(self.redis_url), "Redis", 30, self.redis)
        return self.redis

    def restart_redis(self) -> subprocess.Popen | None:
        """Stop the local Redis and start it again on the same port (its data kept)."""
        stop([self.redis] if self.redis else [])
        return self.start_redis(_port_of(self.redis_url))

    # Prefect ----------------------------------------------------------------------------
    def migrate(self) -> None:
        """Create or upgrade Prefect's schema, once, before any Prefect process starts."""
        subprocess.run([sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
                       env=self._env(), check=True, stdout=self._log("prefect-migrate"), stderr=subprocess.STDOUT)

    def start_api(self, replica: int) -> subprocess.Popen:
        """Prefect API process ``replica`` (webserver and UI, no services)."""
        port = self.ports[replica]
        self.apis[replica] = process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--no-services", "--host", self.host,
             "--port", str(port)],
            env=self._env(PREFECT_UI_API_URL=self.api_urls[0], PREFECT_API_URL=self.api_urls[replica]),
            stdout=self._log(f"prefect-api-{replica}"), stderr=subprocess.STDOUT)
        return process

    def start_services(self) -> subprocess.Popen:
        """The one process running Prefect's services (scheduler, triggers, late runs, ...)."""
        self.services = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "services", "start"],
            env={**retention_env(self.settings), **self._env(PREFECT_API_URL=self.api_urls[0])},
            stdout=self._log("prefect-services"), stderr=subprocess.STDOUT)
        return self.services

    def wait_ready(self, replicas: list[int] | None = None, timeout: float = 120) -> None:
        """Wait until the API processes ``replicas`` (default: all) answer."""
        for replica in range(self.api_processes) if replicas is None else replicas:
            url = self.api_urls[replica]
            wait_until(lambda: is_healthy(url), f"Prefect API process {replica}", timeout, *self.prefect_processes)

    @property
    def prefect_processes(self) -> list[subprocess.Popen]:
        return [p for p in [*self.apis, self.services] if p is not None]

    def start(self) -> None:
        """Everything, in order, until every API process answers (the caller supervises
        and stops the processes: see ``dragonflow up --scale``)."""
        (self.home / "prefect").mkdir(parents=True, exist_ok=True)
        self.start_postgres()
        self.start_redis()
        self.migrate()
        self.start_api(0)  # alone first: concurrent first starts race to register block types
        self.wait_ready(replicas=[0])
        for replica in range(1, self.api_processes):
            self.start_api(replica)
        self.start_services()
        self.wait_ready()


def _port_of(url: str) -> int:
    from urllib.parse import urlparse

    return urlparse(url).port


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False
