"""A service for the scenarios: the program under test started from the tree under test, kept
running across evaluations, health-checked before each, and stopped with its whole process
tree at the end (also on Ctrl-C, and by the watchdog if the factory dies).

Config ``service.start`` (argv; placeholders ``{port}``, ``{python}``), ``service.health``
(an ``http://127.0.0.1...`` URL to GET, where ``{port}`` is filled in, or an argv that must
exit 0), ``service.port`` (0: a free port on 127.0.0.1), ``service.restart_on`` (globs: an
iteration that changes a matching path restarts it). Scenarios get ``FACTORY_SERVICE_URL``.
A service that is not healthy after the retries is an infrastructure failure, never a
scenario failure.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tools.codex.factory.core import placeholders
from tools.codex.factory.core.globs import match_any
from tools.codex.factory.core.text import clip
from tools.codex.factory.errors import FactoryError, UsageError
from tools.codex.factory.infra import fsutil, gitops, proc
from tools.codex.factory.infra.clock import sleep
from tools.codex.factory.loop.evaluate import clean_env

if TYPE_CHECKING:
    import subprocess

TRIES = 5
BACKOFF_S = 2.0  # the wait before try n is n x this
HEALTH_TIMEOUT_S = 5.0
PLACEHOLDERS = ("port", "python")
SERVICE_KEYS = ("start", "health", "port", "restart_on")


class ServiceDown(FactoryError):
    """The service did not become healthy: an infrastructure failure (with its log's tail)."""


@dataclass(frozen=True)
class ServiceSpec:
    start: tuple[str, ...]
    health: str | tuple[str, ...]
    port: int
    restart_on: tuple[str, ...]

    @classmethod
    def of(cls, values: dict[str, Any]) -> ServiceSpec | None:
        """The configured service, or None when ``service.start`` is not set."""
        start = values.get("start")
        if not start:
            return None
        health = values.get("health")
        if not health:
            raise UsageError("service.health: give a URL to GET or a command, with service.start")
        for name, argv in (("start", start), ("health", health)):
            if isinstance(argv, list):
                placeholders.check(argv, PLACEHOLDERS, f"service.{name}")
        return cls(
            start=tuple(str(a) for a in start),
            health=tuple(str(a) for a in health) if isinstance(health, list) else str(health),
            port=int(values.get("port") or 0),
            restart_on=tuple(str(g) for g in values.get("restart_on") or ()),
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """One service for a run of evaluations (a crank's group): :meth:`ready` before each."""

    spec: ServiceSpec
    repo: Path
    port: int = 0
    starts: int = 0  # how often it was started (the first start included)
    _proc: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _log: IO[bytes] | None = None
    _commit: str | None = None
    log_tail: Callable[[], str] = field(default=lambda: "")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self, commit: str, changed: Iterable[str]) -> None:
        """Running and healthy for ``commit``: started the first time, restarted when
        ``changed`` (the paths the iteration changed) matches ``service.restart_on`` or it
        died; raises ServiceDown when it is not healthy after the retries."""
        restart = self._proc is None or self._proc.poll() is not None
        if not restart and self._commit != commit:
            restart = any(match_any(p, list(self.spec.restart_on)) is not None for p in changed)
        if restart:
            self.stop()
            self._start(commit)
        self._healthy()

    def _start(self, commit: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(
            prefix="factory-service-", ignore_cleanup_errors=True
        )
        base = Path(self._tmp.name)
        tree, home = base / "tree", base / "home"
        home.mkdir()
        with gitops.tree_exporter(self.repo, commit) as export:
            export(tree)
        self.port = self.spec.port or free_port()
        values = {"port": str(self.port), "python": sys.executable}
        env = clean_env(tree, home)
        env["FACTORY_SERVICE_PORT"] = str(self.port)
        log_path = base / "service.log"
        self._log = log_path.open("wb")
        self.log_tail = lambda: _tail(log_path)
        try:
            self._proc = proc.start_configured(
                placeholders.expand(list(self.spec.start), values), tree, env, self._log, self._log
            )
        except (FactoryError, OSError) as exc:  # its program is missing: nothing to check
            raise ServiceDown(f"service could not start: {exc}") from None
        self._commit = commit
        self.starts += 1

    def _healthy(self) -> None:
        for n in range(1, TRIES + 1):
            sleep(BACKOFF_S * n if n > 1 else 0.2)
            if self._proc is not None and self._proc.poll() is not None:
                break  # it exited: no retry makes it healthy
            if self._check():
                return
        raise ServiceDown(
            f"service not healthy after {TRIES} tries ({self.url}); its log ends: "
            f"{clip(self.log_tail().strip().splitlines()[-1] if self.log_tail().strip() else '(empty)', 300)}"
        )

    def _check(self) -> bool:
        health = self.spec.health
        if isinstance(health, str):
            url = health.replace("{port}", str(self.port))
            if not url.startswith("http://127.0.0.1") and not url.startswith("http://localhost"):
                raise UsageError(f"service.health {health!r}: give an http://127.0.0.1 URL")
            return _http_ok(url)
        values = {"port": str(self.port), "python": sys.executable}
        try:
            res = proc.run(
                placeholders.expand(list(health), values), check=False, timeout=HEALTH_TIMEOUT_S
            )
        except FactoryError:  # missing, or over its time: not healthy
            return False
        return res.rc == 0

    def stop(self) -> None:
        """Stop its whole process tree and remove its tree (nothing is left running)."""
        if self._proc is not None:
            proc.kill_tree(self._proc)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            with contextlib.suppress(OSError, FactoryError):
                fsutil.remove_tree(Path(self._tmp.name))
            self._tmp.cleanup()
            self._tmp = None


def _tail(path: Path, limit: int = 4096) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def _http_ok(url: str) -> bool:
    """GET ``url`` on this machine, asking the service itself: no proxy (``http_proxy`` would
    send it elsewhere), no redirect followed; 2xx is healthy."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        return False
    conn = http.client.HTTPConnection(
        str(parts.hostname), parts.port or 80, timeout=HEALTH_TIMEOUT_S
    )
    try:
        conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        return 200 <= conn.getresponse().status < 300
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        conn.close()
