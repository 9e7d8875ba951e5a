"""The one subprocess wrapper: argv lists only, never a shell; errors show cmd, rc and output."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
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
