"""The one subprocess wrapper: argv lists only, never a shell; errors show cmd, rc and output.

Every child is started through here. ``argv[0]`` is resolved with :func:`shutil.which` on the
child's PATH first (on Windows that honours PATHEXT, so npm's ``codex.cmd``/``claude.cmd``
shims start; ``Popen(["codex"])`` alone cannot start them).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tools.codex.factory.errors import ProcessError

# Variables that would point git at another repository than the one we name.
GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)


@dataclass(frozen=True)
class Result:
    argv: list[str]
    rc: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


def base_env(extra: Mapping[str, str] | None = None, drop_git: bool = False) -> dict[str, str]:
    """The environment for a child: ours minus repository-locating git variables."""
    env = dict(os.environ)
    for key in list(env):
        if (drop_git and key.startswith("GIT_")) or key in GIT_LOCATION_VARS:
            del env[key]
    if extra:
        env.update(extra)
    return env


@functools.lru_cache(maxsize=256)
def _which(program: str, path: str | None) -> str | None:
    return shutil.which(program, path=path)


def resolve_argv(
    argv: Sequence[str], env: Mapping[str, str] | None, error: type[ProcessError] = ProcessError
) -> list[str]:
    """``argv`` as strings with ``argv[0]`` resolved on the child's PATH (PATHEXT on Windows).

    A program that is not found is one ``error`` line naming it. A path with a directory part
    is used as given (relative to the child's working folder).
    """
    args = [str(a) for a in argv]
    if not args:
        raise error(args, None, "", "", why="could not start: empty command")
    prog = args[0]
    if os.sep in prog or (os.altsep and os.altsep in prog):
        return args
    path = (env if env is not None else os.environ).get("PATH")
    found = _which(prog, path if path is not None else os.defpath)
    if found is None:
        raise error(args, None, "", "", why=f"could not start: {prog!r} not found on PATH")
    return [found, *args[1:]]


def run(
    argv: Sequence[str],
    cwd: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    timeout: float | None = None,
    check: bool = True,
    error: type[ProcessError] = ProcessError,
) -> Result:
    """Run ``argv``; raise ``error`` on a non-zero rc when ``check``, a missing program always."""
    child_env = dict(env) if env is not None else base_env()
    args = [str(a) for a in argv]  # as given: messages and results name the command as written
    try:
        proc = subprocess.run(
            resolve_argv(args, child_env, error),
            cwd=str(cwd) if cwd is not None else None,
            env=child_env,
            input=input,
            capture_output=True,
            stdin=None if input is not None else subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise error(
            args, None, "", "", why=f"could not start: {args[0]!r} not found on PATH"
        ) from None
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode("utf-8", "replace")
        err = (exc.stderr or b"").decode("utf-8", "replace")
        raise error(args, None, out, err, why=f"timed out after {timeout}s") from None
    except OSError as exc:
        raise error(args, None, "", "", why=f"could not start: {exc.strerror}") from None
    result = Result(args, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise error(args, proc.returncode, result.out, result.err)
    return result


@dataclass(frozen=True)
class Finished:
    rc: int | None
    timed_out: bool
    interrupted: bool = False


def kill_group(p: subprocess.Popen[bytes]) -> None:
    """Stop whatever is left in a child's process group (POSIX; the child was started by
    :func:`start` as a group leader). On Windows there is no group to stop once the child has
    exited: its grandchildren keep running (no job objects yet, see RUNBOOK.md)."""
    if os.name == "nt":  # pragma: no cover - Windows: kill_tree uses taskkill /T while it runs
        return
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)


def kill_tree(p: subprocess.Popen[bytes]) -> None:
    """Stop a child and everything it started (its own process group / job)."""
    if p.poll() is not None and os.name == "nt":  # pragma: no cover
        return
    if os.name == "nt":  # pragma: no cover - Windows
        with contextlib.suppress(ProcessError):
            run(["taskkill", "/F", "/T", "/PID", str(p.pid)], check=False)
    else:
        kill_group(p)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover
        p.kill()


def start(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    stdout: IO[bytes],
    stderr: IO[bytes],
    stdin_data: bool = False,
) -> subprocess.Popen[bytes]:
    """Start in a new process group (POSIX session / Windows group) so the tree can be stopped."""
    args = [str(a) for a in argv]
    flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) if os.name == "nt" else 0
    try:
        return subprocess.Popen(
            resolve_argv(args, env),
            cwd=str(cwd),
            env=dict(env),
            stdin=subprocess.PIPE if stdin_data else subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            creationflags=flags,
            start_new_session=os.name != "nt",
        )
    except FileNotFoundError:
        raise ProcessError(
            args, None, "", "", why=f"could not start: {args[0]!r} not found on PATH"
        ) from None
    except OSError as exc:
        raise ProcessError(args, None, "", "", why=f"could not start: {exc.strerror}") from None


def run_logged(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    out: IO[bytes],
    err: IO[bytes],
    timeout: float | None,
    stdin_data: bytes | None = None,
) -> Finished:
    """Run with output streamed to two open files (the caller creates them, e.g. through the
    guarded writer); on timeout or Ctrl-C the whole tree is stopped."""
    p = start(argv, cwd, env, out, err, stdin_data is not None)
    try:
        if stdin_data is not None and p.stdin is not None:
            try:
                p.stdin.write(stdin_data)
                p.stdin.close()
            except BrokenPipeError:
                pass
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(p)
        return Finished(None, True)
    except KeyboardInterrupt:
        kill_tree(p)
        raise
    # Grandchildren left running in the group would outlive the check: stop them.
    kill_group(p)
    return Finished(rc, False)


def spawn_detached(argv: Sequence[str]) -> None:
    """Start a program we do not wait for (a file opener): no stdio, its own session."""
    args = [str(a) for a in argv]
    try:
        subprocess.Popen(
            resolve_argv(args, None),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=os.name != "nt",
        )
    except OSError as exc:
        raise ProcessError(args, None, "", "", why=f"could not start: {exc.strerror}") from None
