"""What every command needs: the repository, the clock, the config and the ledger."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.codex.factory.core.paths import Layout
from tools.codex.factory.errors import ArgumentError
from tools.codex.factory.infra import gitops
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.ledger.store import Event, Ledger
from tools.codex.factory.run import config as config_mod


@dataclass
class Context:
    repo_opt: Path | None
    clock: Clock
    debug: bool = False
    cli_config: dict[str, Any] = field(default_factory=dict)
    # Where each override came from, as the caller names it (the CLI: ``cli:--kind``).
    cli_origins: dict[str, str] = field(default_factory=dict)
    # Told of every event this process appends (the CLI's progress lines on stderr).
    on_event: Callable[[Event], None] | None = None
    # Told of one-line notices for the operator (stderr), e.g. a pinned clock that was raised.
    on_notice: Callable[[str], None] | None = None
    config_file: Path | None = None  # --config: read this file instead of the repository's
    _ledger: Ledger | None = None

    @functools.cached_property
    def repo(self) -> Path:

        start = self.repo_opt if self.repo_opt is not None else Path.cwd()
        if not start.exists():
            raise ArgumentError("repo", "no such directory", label="repository", value=str(start))
        if self.repo_opt is not None and (start / ".git").exists():
            return start.resolve()  # an explicit repository root needs no lookup
        return gitops.toplevel(start.resolve())

    @functools.cached_property
    def config(self) -> config_mod.Config:
        return config_mod.load(
            self.repo, cli=self.cli_config, named=self.cli_origins, file=self.config_file
        )

    @functools.cached_property
    def layout(self) -> Layout:
        return Layout(self.repo, self.config.runs_rel, self.config.ledger_rel)

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(
                self.layout.ledger_path,
                self.clock,
                fsync=bool(self.config.get("ledger.fsync")),
                lock_timeout=float(self.config.get("ledger.lock_timeout_s")),
                base=self.layout.repo,
            )
            self._ledger.on_append = self.on_event
            self._ledger.on_clock_raised = self._clock_raised
        return self._ledger

    def _clock_raised(self, asked: str, used: str) -> None:
        if self.on_notice is not None:
            self.on_notice(clock_raised_line(self.clock.source, asked, used))

    def tell(self, fn: Callable[[Event], None] | None) -> None:
        """Have ``fn`` told of every event this process appends from now on."""
        self.on_event = fn
        if self._ledger is not None:
            self._ledger.on_append = fn

    def source(self, dotted: str) -> str:
        """Where a config value came from, as the operator set it: the caller's name for it
        (``argument run.base_ref``; the CLI's option), ``FACTORY_RUN__BASE_REF``,
        ``run.base_ref in <file>`` or ``run.base_ref`` (default)."""
        origin = self.config.origin(dotted)
        if origin.startswith(("cli:", "env:")):
            return origin.split(":", 1)[1]
        if origin.startswith("file:"):
            return f"{dotted} in {self.config.file}"
        return dotted if origin == "default" else origin

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()


def clock_raised_line(source: str, asked: str, used: str) -> str:
    """Why events are not stamped with the pinned time: the ledger's times never go back."""
    return (
        f"factory: {source} {asked} is earlier than the ledger's last event: events are stamped "
        f"{used} instead (the ledger's times never go back); for byte-identical runs use a fresh "
        "ledger (paths.runs_dir set to a new folder, e.g. FACTORY_PATHS__RUNS_DIR)"
    )
