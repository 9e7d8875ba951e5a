"""The run lock against another process: while a real child process holds a run's lock,
`bundle-collect`, `clean --run-id` and `launch --resume` are BLOCKED at once (exit 3) with one
line naming the lock, and change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.repos import ROOT, snapshot
from tests.support.workers import cli, events, run_dir, work_repo, worktrees

HOLDER = (
    "import sys\n"
    "from pathlib import Path\n"
    "from tools.codex.factory.infra.locks import ProcessLock\n"
    "lock = ProcessLock(Path(sys.argv[1]), 0, 'test holder')\n"
    "lock.acquire()\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
    "lock.release()\n"
)


@contextmanager
def held_by_child(lock_path: Path) -> Iterator[int]:
    """A real child process holding the run lock (the package's lock helper) until the block
    ends; yields its pid."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        yield child.pid
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


def interactive_run(repo: Path) -> tuple[str, Path]:
    """A real run: worker A's worktree, left PENDING (no agent configured), with an edit."""
    res = cli(repo, "launch", "--workers", "A", "--json")
    assert res.returncode == 0, res.stderr
    run_id = str(json.loads(res.stdout)["run_id"])
    tree = worktrees(repo)[f"factory/{run_id}/A"]
    (tree / "src" / "app.py").write_text("print('v2')\n")
    return run_id, tree


COMMANDS = {
    "bundle-collect": ["bundle-collect", "--run-id"],
    "clean": ["clean", "--force", "--run-id"],
    "launch --resume": ["launch", "--resume", "--run-id"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_run_lock_held_by_another_process_blocks_at_once(tmp_path: Path, command: str) -> None:
    repo = work_repo(tmp_path)
    run_id, tree = interactive_run(repo)
    folder = run_dir(repo, run_id)
    bundle = {p.name: p.read_bytes() for p in (folder / "A_worker").iterdir() if p.is_file()}
    before_events = len(events(repo, run_id))
    before_repo = snapshot(repo)
    with held_by_child(folder / "locks" / "run.lock"):
        res = cli(repo, *COMMANDS[command], run_id, timeout=60)
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"run lock of {run_id}" in res.stderr and "held by another" in res.stderr
    assert "(run.lock)" in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    # Nothing changed: the bundle, the worktree, the repository, the run's events.
    assert {p.name: p.read_bytes() for p in (folder / "A_worker").iterdir() if p.is_file()} == (
        bundle
    )
    assert tree.is_dir() and (tree / "src" / "app.py").read_text() == "print('v2')\n"
    assert snapshot(repo) == before_repo
    assert len(events(repo, run_id)) == before_events
    # With the holder gone, the same command goes ahead.
    res = cli(repo, *COMMANDS[command], run_id, timeout=120)
    assert "run lock" not in res.stderr, res.stderr
