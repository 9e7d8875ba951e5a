"""Guard the repository's shared git folder while agents work in linked worktrees.

A worktree shares its repository's ``config`` and ``hooks/``: an agent that writes a hook or a
config key there (``core.hooksPath``, ``core.fsmonitor``, an alias) would run its code in the
operator's next git command. At launch the factory records what these files hold (their bytes go
to the run's snapshot store, their hashes to the ledger as ``gitdir.recorded``). Collecting a
bundle (before git touches the worktree) and bundle-validate compare, and on any change restore
the recorded bytes, remove what was added and record ``gitdir.restored``; the next validation
blocks every worker of the run (rule ``git-dir-changed``).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from tools.codex.factory.errors import BlockedError
from tools.codex.factory.infra import fsutil, gitops
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.ledger.recorder import Recorder
from tools.codex.factory.ledger.store import Filter
from tools.codex.factory.run import snapshots
from tools.codex.factory.run.facts import walk

RECORDED = "gitdir.recorded"
RESTORED = "gitdir.restored"
WATCHED_FILES = ("config", "config.worktree")
WATCHED_DIRS = ("hooks",)
MAX_BYTES = 16 * 1024 * 1024


def _state(common: Path, kept: dict[str, bytes] | None = None) -> dict[str, dict[str, Any]]:
    """rel -> {sha256 | link | special, mode} for the watched files of the common git folder;
    ``kept`` receives the bytes each hash was taken of (read once, never through a link, never
    blocking on a FIFO an agent swapped in)."""
    out: dict[str, dict[str, Any]] = {}

    def add(rel: str, st: os.stat_result) -> None:
        path = common / rel
        if stat.S_ISLNK(st.st_mode):
            out[rel] = {"link": os.readlink(path), "mode": 0}
        elif stat.S_ISREG(st.st_mode) and st.st_size <= MAX_BYTES:
            try:
                data = fsutil.read_regular(path, MAX_BYTES + 1)
            except fsutil.NotRegularFileError:  # swapped since the lstat
                out[rel] = {"special": True, "mode": 0}
                return
            out[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "mode": st.st_mode & 0o777}
            if kept is not None:
                kept[rel] = data
        elif not stat.S_ISDIR(st.st_mode):
            out[rel] = {"special": True, "mode": 0}

    for name in WATCHED_FILES:
        try:
            add(name, os.lstat(common / name))
        except FileNotFoundError:
            continue
    for name in WATCHED_DIRS:
        folder = common / name
        try:
            st = os.lstat(folder)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            add(name, st)
            continue
        for rel, entry in walk(folder):
            add(f"{name}/{rel}", entry)
    return dict(sorted(out.items()))


def record(repo: Path, rec: Recorder, writer: GuardedWriter) -> dict[str, dict[str, Any]]:
    """Keep the watched files' bytes in the snapshot store; record their state in the ledger."""
    common = gitops.common_dir(repo)
    kept: dict[str, bytes] = {}
    state = _state(common, kept)
    for rel in sorted(kept):  # the very bytes hashed
        snapshots.put(writer, kept[rel])
    rec.emit(RECORDED, "launch", files=state)
    return state


def check_and_restore(
    repo: Path, rec: Recorder, run_dir: Path, stage: str = "bundle-validate"
) -> list[str]:
    """The watched paths that changed since launch recorded them ([] when none, or when the run
    has no record: a dry run or an earlier release); restored and recorded when changed."""
    found = rec.ledger.select(Filter(run_id=rec.run_id, event_type=RECORDED), limit=1)
    if not found:
        return []
    recorded: dict[str, dict[str, Any]] = found[-1].payload["files"]
    common = gitops.common_dir(repo)
    now = _state(common)
    changed = sorted(rel for rel in set(recorded) | set(now) if recorded.get(rel) != now.get(rel))
    if not changed:
        return []
    problems: list[str] = []
    for rel in changed:
        path = common / rel
        want = recorded.get(rel)
        try:
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.exists():
                problems.append(f"{rel} is in the way (not a file)")
                continue
            if want is None:
                continue  # added by an agent: removed
            if "link" in want:
                os.symlink(want["link"], path)
            elif "sha256" in want:
                data = snapshots.get(run_dir, want["sha256"], MAX_BYTES)
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(
                    path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
                )
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
                os.chmod(path, int(want["mode"]) or 0o644)
        except (OSError, BlockedError) as exc:
            problems.append(f"{rel}: {exc}")
    rec.emit(RESTORED, stage, changed=changed, problems=problems)
    return changed


def restored_since_validation(rec: Recorder) -> list[str]:
    """The watched paths restored (by collect or validation) since the run's last
    ``validation.decided``: the next validation blocks on them, once."""
    ledger, run_id = rec.ledger, rec.run_id
    decided = ledger.select(Filter(run_id=run_id, event_type="validation.decided"))
    after = max((ev.seq for ev in decided), default=0)
    changed: set[str] = set()
    for ev in ledger.select(Filter(run_id=run_id, event_type=RESTORED)):
        if ev.seq > after:
            changed.update(str(rel) for rel in ev.payload.get("changed", []))
    return sorted(changed)
