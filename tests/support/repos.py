"""Real git repositories in tmp_path and the CLI run as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PINNED = "2026-11-21T20:15:00Z"


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    """Test-side git helper (tests set up fixtures with real git)."""
    res = subprocess.run(
        ["git", "-C", str(repo), *args], input=input, capture_output=True, check=False
    )
    if res.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {res.stderr.decode()}")
    return res.stdout.decode()


def snapshot(repo: Path) -> dict[str, bytes]:
    """What an operator would notice changing in ``repo``: HEAD, index, branches, stash,
    worktree status (equal before and after: the factory left the repository alone)."""

    def out(*args: str) -> bytes:
        res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
        return res.stdout

    return {
        "head": out("rev-parse", "HEAD"),
        "symbolic": out("symbolic-ref", "-q", "HEAD"),
        "branches": out("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"),
        "stash": out("stash", "list"),
        "status": out("status", "--porcelain=v1", "-z", "--untracked-files=all"),
        "index": out("ls-files", "-s", "--debug"),
        "worktrees": out("worktree", "list", "--porcelain"),
    }


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    for rel, text in (files or {"README.md": "hello\n", "src/app.py": "print('hi')\n"}).items():
        f = path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(text.encode("utf-8"))
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    return path


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    real: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as an operator would and return what a process would: exit code, stdout,
    stderr. In-process (click's isolation: the same entry point, streams and environment) unless
    ``real`` (a child process, ``python -m tools.codex.factory``) or FACTORY_TEST_REAL=1."""
    if real or os.environ.get("FACTORY_TEST_REAL") == "1":
        return run_process(*args, cwd=cwd, env=env, timeout=timeout)
    from click.testing import CliRunner

    from tools.codex.factory.cli.commands import run

    runner = CliRunner()
    here = os.getcwd()
    with runner.isolation(env=env) as (out, err, _mixed):
        if cwd is not None:
            os.chdir(cwd)
        try:
            code = within(timeout, f"factory {' '.join(args)}", lambda: run(list(args)))
        finally:
            os.chdir(here)
        stdout = out.getvalue().decode("utf-8", "replace")
        stderr = err.getvalue().decode("utf-8", "replace")
    return subprocess.CompletedProcess(["factory", *args], code, stdout, stderr)


def within(timeout: float, what: str, fn: Callable[[], int]) -> int:
    """``fn()`` in a thread of its own, failing the test when it has not returned within
    ``timeout`` seconds: an in-process hang must not stall the test worker. (The thread, a
    daemon, is left to end on its own; whatever ``fn`` raised is raised here.)"""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["code"] = fn()
        except BaseException as exc:  # handed to the test's thread below
            box["error"] = exc

    thread = threading.Thread(target=call, name="factory-cli", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"`{what}` did not finish within {timeout:g}s (in-process)")
    if "error" in box:
        raise box["error"]
    return int(box["code"])


def run_process(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a real process, ``python -m tools.codex.factory``."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tools.codex.factory", *args],
        cwd=str(cwd) if cwd else None,
        env=full_env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


def run_on_terminal(
    repo: Path, *args: str, env: dict[str, str], stdout: bool = False, timeout: float = 120
) -> tuple[str, str, int]:
    """The CLI as a real process with stderr (and stdout when ``stdout``) on a pseudo-terminal
    (TERM=xterm, NO_COLOR unset unless ``env`` sets it): what the terminal received, what
    stdout's pipe received ("" when it is on the terminal) and the exit code. POSIX only."""
    import pty

    master, slave = pty.openpty()
    full = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    full.update({"PYTHONPATH": str(ROOT), "TERM": "xterm", **env})
    argv = [sys.executable, "-m", "tools.codex.factory", "--repo", str(repo), *args]
    out = slave if stdout else subprocess.PIPE
    proc = subprocess.Popen(argv, stdout=out, stderr=slave, env=full)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    piped = proc.stdout.read().decode() if proc.stdout is not None else ""
    rc = proc.wait(timeout=timeout)
    return b"".join(chunks).decode("utf-8", "replace"), piped, rc


def pid_alive(pid: int) -> bool:
    """True if the process runs; a zombie (killed, not yet reaped by its new parent) is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    return True
