"""The one subprocess wrapper: argv lists only, never a shell; errors show cmd, rc and output."""

from __future__ import annotations

import contextlib
import os
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
    args = [str(a) for a in argv]
    try:
        proc = subprocess.run(
            args,
            cwd=str(cwd) if cwd is not None else None,
            env=dict(env) if env is not None else base_env(),
            input=input,
            capture_output=True,
            stdin=None if input is not None else subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise error(args, None, "", "", why=f"could not start: {args[0]!r} not found on PATH") from None
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




def kill_tree(p: subprocess.Popen[bytes]) -> None:
    """Stop a child and everything it started (its own process group / job)."""
    if p.poll() is not None and os.name == "nt":  # pragma: no cover
        return
    if os.name == "nt":  # pragma: no cover - Windows
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(p.pid)], capture_output=True, check=False)
    else:
        import signal

        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
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
            args,
            cwd=str(cwd),
            env=dict(env),
            stdin=subprocess.PIPE if stdin_data else subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            creationflags=flags,
            start_new_session=os.name != "nt",
        )
    except FileNotFoundError:
        raise ProcessError(args, None, "", "", why=f"could not start: {args[0]!r} not found on PATH") from None
    except OSError as exc:
        raise ProcessError(args, None, "", "", why=f"could not start: {exc.strerror}") from None


def run_logged(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    stdout_path: Path,
    stderr_path: Path,
    timeout: float | None,
    stdin_data: bytes | None = None,
) -> Finished:
    """Run with output streamed to two files; on timeout or Ctrl-C the whole tree is stopped."""
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
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
        if os.name != "nt":
            # Grandchildren left running in the group would outlive the check: stop them.
            import signal

            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
    return Finished(rc, False)
