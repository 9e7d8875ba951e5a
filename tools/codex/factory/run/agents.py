"""Headless agents: presets, argv placeholders, and running them in parallel with timeouts.

An agent spec (config ``workers.agent`` / ``workers.agents.<W>``, or a plan worker's ``agent``)
is ``{preset, argv?, prompt_via?, timeout_s?}``. Presets give a documented command line for a
CLI agent; ``argv`` replaces it. argv is always a list, run without a shell, in the worker's
worktree, in a process group of its own so the whole tree can be stopped.

Placeholders in argv: ``{prompt_file}`` (the worktree's ``.factory/PROMPT.md``), ``{worktree}``,
``{worker_id}``, ``{run_id}``, ``{base_ref}``, ``{base_commit}`` and ``{python}`` (the Python
running the factory, ``sys.executable``). ``{{`` and ``}}`` are literal braces.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from tools.codex.factory.core import placeholders
from tools.codex.factory.errors import FactoryError, ProcessError, UsageError
from tools.codex.factory.infra import proc
from tools.codex.factory.infra.clock import Clock

if TYPE_CHECKING:
    import subprocess

# Documented non-interactive command lines (see RUNBOOK.md "Real workers").
PRESETS: dict[str, dict[str, Any]] = {
    # Codex CLI: `codex exec` runs one task without the TUI; `-` reads the prompt from stdin;
    # workspace-write lets it edit the worktree (the successor of the deprecated --full-auto).
    "codex": {
        "argv": ["codex", "exec", "--sandbox", "workspace-write", "-"],
        "prompt_via": "stdin",
    },
    # Claude Code: print mode (-p) reads the prompt from stdin; acceptEdits applies file edits.
    "claude": {"argv": ["claude", "-p", "--permission-mode", "acceptEdits"], "prompt_via": "stdin"},
    # Aider: one message from a file, answer yes to every question, then exit.
    "aider": {
        "argv": ["aider", "--yes-always", "--no-check-update", "--message-file", "{prompt_file}"],
        "prompt_via": "file",
    },
    # Anything else: argv is required.
    "script": {"argv": None, "prompt_via": "file"},
}
PLACEHOLDERS = (
    "prompt_file",
    "worktree",
    "worker_id",
    "run_id",
    "base_ref",
    "base_commit",
    "python",
)


@dataclass(frozen=True)
class AgentSpec:
    preset: str
    argv: tuple[str, ...]
    prompt_via: str
    timeout_s: float
    source: str  # where the spec came from, for messages

    def as_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "argv": list(self.argv),
            "prompt_via": self.prompt_via,
            "timeout_s": self.timeout_s,
            "source": self.source,
        }


def check_argv(argv: list[str], source: str) -> None:
    """Every ``{...}`` is a known placeholder; any other brace is doubled (``{{``, ``}}``)."""
    placeholders.check(argv, PLACEHOLDERS, source)


def expand(argv: tuple[str, ...] | list[str], values: Mapping[str, str]) -> list[str]:
    return placeholders.expand(argv, values)


def resolve(worker: Mapping[str, Any], config: Mapping[str, Any]) -> AgentSpec | None:
    """The worker's agent: ``workers.agents.<W>`` > the plan worker's ``agent`` > ``workers.agent``.

    ``config`` is the effective config (as recorded in the run manifest). None: interactive.
    """
    wid = worker["id"]
    wcfg = config["workers"]
    raw: Mapping[str, Any] | None
    if wid in (wcfg.get("agents") or {}):
        raw, source = wcfg["agents"][wid], f"config workers.agents.{wid}"
    elif worker.get("agent"):
        raw, source = worker["agent"], f"plan worker {wid} agent"
    elif wcfg.get("agent"):
        raw, source = wcfg["agent"], "config workers.agent"
    else:
        return None
    return spec_of(raw, source, wcfg)


def spec_of(raw: Mapping[str, Any], source: str, wcfg: Mapping[str, Any]) -> AgentSpec:
    """The agent a config or plan entry describes (``source`` names the entry in messages;
    ``wcfg`` is the ``workers`` config, for the default time limit)."""
    preset = raw.get("preset")
    if preset not in PRESETS:
        raise UsageError(f"{source}.preset: {preset!r} is not one of {', '.join(PRESETS)}")
    argv = raw.get("argv") or PRESETS[preset]["argv"]
    if not argv:
        raise UsageError(
            f'{source}.argv: preset \'script\' needs an argv list, e.g. ["{{python}}", "agent.py"]'
        )
    check_argv(list(argv), source)
    via = raw.get("prompt_via") or PRESETS[preset]["prompt_via"]
    if via not in ("file", "stdin"):
        raise UsageError(f"{source}.prompt_via: {via!r} is not 'file' or 'stdin'")
    timeout = float(raw.get("timeout_s") or wcfg["timeout_s"])
    return AgentSpec(preset, tuple(str(a) for a in argv), via, timeout, source)


def program(spec: AgentSpec) -> str:
    """The program the agent starts: ``argv[0]`` with its placeholders filled (``{python}``)."""
    values = {p: "" for p in PLACEHOLDERS}
    values["python"] = sys.executable
    return expand(spec.argv[:1], values)[0]


# -- running ------------------------------------------------------------------------------------
@dataclass
class Job:
    worker: str
    spec: AgentSpec
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    stdin: bytes | None
    # Creates the agent's stdout and stderr logs (through the guarded writer: never through
    # a link planted at their names).
    open_logs: Callable[[], tuple[BinaryIO, BinaryIO]]


@dataclass
class JobResult:
    worker: str
    rc: int | None
    timed_out: bool
    interrupted: bool
    started: bool
    error: str = ""
    elapsed: float = 0.0


@dataclass
class Runner:
    """Runs jobs in parallel (``max_parallel`` at a time) and stops them all on Ctrl-C.

    ``on_start(job)`` runs when a process has started; ``on_done(job, result)`` runs in the
    job's thread as soon as its process ends (that is where the bundle is collected).
    """

    max_parallel: int
    clock: Clock  # reported durations (0 when pinned); time limits use real time
    on_start: Callable[[Job], None]
    on_done: Callable[[Job, JobResult], None]
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)

    def run(self, jobs: list[Job]) -> bool:
        """Run every job; returns True if interrupted (Ctrl-C), after every bundle is collected."""
        queue = list(jobs)
        qlock = threading.Lock()

        def take() -> Job | None:
            with qlock:
                return queue.pop(0) if queue else None

        def loop() -> None:
            while True:
                job = take()
                if job is None:
                    return
                try:
                    self._one(job)
                except BaseException as exc:  # recorded; the main thread reports it
                    self.errors.append(exc)

        count = max(1, min(self.max_parallel, len(jobs)))
        # Completion is tracked with events, not Thread.join: on CPython 3.11 a Ctrl-C that
        # lands inside join() can mark a still-running thread as stopped (its tstate lock is
        # released on the way out), and a later join() would then return before the agent's
        # bundle is collected.
        done = [threading.Event() for _ in range(count)]

        def worker(i: int) -> None:
            try:
                loop()
            finally:
                done[i].set()

        threads = [
            threading.Thread(target=worker, args=(i,), name=f"factory-agent-{i}", daemon=True)
            for i in range(count)
        ]
        started: list[int] = []
        interrupted = False
        try:
            for i, t in enumerate(threads):
                t.start()
                started.append(i)
            while not all(done[i].is_set() for i in started):
                for i in started:
                    done[i].wait(timeout=0.1)
        except KeyboardInterrupt:
            interrupted = True
            self.interrupt()  # jobs not yet taken are collected as "interrupted before start"
            previous = ignore_sigint()
            try:
                if not started:  # interrupted before any thread ran: still collect every bundle
                    loop()
                for i in started:
                    done[i].wait()
            finally:
                restore_sigint(previous)
        return interrupted

    def interrupt(self) -> None:
        self.stop.set()
        with self._lock:
            running = list(self._running.values())
        for p in running:
            proc.kill_tree(p)

    def _one(self, job: Job) -> None:
        if self.stop.is_set():
            self.on_done(
                job,
                JobResult(
                    job.worker, None, False, True, False, "interrupted before its agent started"
                ),
            )
            return
        start = self.clock.monotonic()
        try:
            out, err = job.open_logs()
        except FactoryError as exc:
            result = JobResult(
                job.worker, None, False, False, False, f"agent could not start: {exc}"
            )
            result.elapsed = self.clock.elapsed(start)
            self.on_done(job, result)
            return
        with out, err:
            try:
                p = self._start(job, out, err)
            except ProcessError as exc:
                err.write((str(exc) + "\n").encode("utf-8"))
                err.flush()
                result = JobResult(
                    job.worker, None, False, False, False, f"agent could not start: {exc.args[0]}"
                )
                p = None
            if p is not None:
                result = self._wait(job, p)
        result.elapsed = self.clock.elapsed(start)
        self.on_done(job, result)

    def _start(self, job: Job, out: IO[bytes], err: IO[bytes]) -> subprocess.Popen[bytes]:
        with self._lock:
            p = proc.start_configured(
                job.argv, job.cwd, job.env, out, err, stdin_data=job.stdin is not None
            )
            self._running[job.worker] = p
        if job.stdin is not None:
            proc.feed(p, job.stdin)
        try:
            self.on_start(job)
        except Exception as exc:  # the process runs: it must still be waited for and collected
            self.errors.append(exc)
        return p

    def _wait(self, job: Job, p: subprocess.Popen[bytes]) -> JobResult:
        # The time limit runs in real time (proc.wait); reported durations come from the
        # (maybe pinned) clock. Ctrl-C sets ``stop``: proc.wait stops the agent's tree.
        done = proc.wait(p, job.spec.timeout_s, self.stop)
        with self._lock:
            self._running.pop(job.worker, None)
        timed_out = done.timed_out
        interrupted = done.interrupted or (self.stop.is_set() and not timed_out)
        rc = None if (timed_out or interrupted) else done.rc
        return JobResult(job.worker, rc, timed_out, interrupted, True)


def ignore_sigint() -> Any:
    """Ignore Ctrl-C (main thread only) while stopping and recording; returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, signal.SIG_IGN)


def restore_sigint(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
