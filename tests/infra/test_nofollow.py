"""Nothing the factory creates is written through a planted link: the guarded writer, the
tree walk and removal, and the locks, on real files, real symlinks and real FIFOs."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.repos import ROOT
from tools.codex.factory.errors import BlockedError, FactoryError, PolicyViolation
from tools.codex.factory.infra import clock, fsutil
from tools.codex.factory.infra.locks import ProcessLock
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.run import facts

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
DEPTH = 1_100  # deeper than Python 3.11's recursion limit lets os.walk, rglob or rmtree go


@pytest.fixture(params=["dir_fd", "by_path"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways the writer creates files: directory handles (POSIX) and, as on Windows,
    by path with the handle checked afterwards (selected here with the same real files)."""
    if request.param == "by_path":
        monkeypatch.setattr(fsutil, "HAVE_DIR_FD", False)
    elif not fsutil.HAVE_DIR_FD:
        pytest.skip("no directory handles on this platform")
    return str(request.param)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(run folder, a user's repository file, a user's folder outside the run)."""
    run = tmp_path / "repo" / "tools" / "codex" / "runs" / "run-1"
    run.mkdir(parents=True)
    user_file = tmp_path / "repo" / "src" / "app.py"
    user_file.parent.mkdir(parents=True)
    user_file.write_bytes(b"print('precious')\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"keep\n")
    yield run, user_file, outside


@pytest.fixture
def deep_ok(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, emptied afterwards without recursion: pytest's own clean-up of old temp
    folders (shutil.rmtree) would hit RecursionError on a 1,100-deep tree left behind."""
    yield tmp_path
    rm = shutil.which("rm")
    if rm is not None:
        subprocess.run([rm, "-rf", str(tmp_path)], check=False)
    else:  # pragma: no cover - Windows
        with contextlib.suppress(FactoryError):
            fsutil.remove_tree(tmp_path)


def old_temp_name(name: str) -> str:
    """The temporary name the writer used to use: predictable from the pid."""
    return f".{name}.tmp{os.getpid()}"


# -- the temporary name ------------------------------------------------------------------------


def test_a_link_at_the_temp_name_never_redirects_a_write(
    site: tuple[Path, Path, Path], mode: str
) -> None:
    run, user_file, _ = site
    (run / "Z_integrator").mkdir()
    (run / "Z_integrator" / old_temp_name("DIFF.patch")).symlink_to(user_file)
    writer = GuardedWriter(run)
    writer.write("Z_integrator/DIFF.patch", b"diff --git a/x b/x\n")
    assert user_file.read_bytes() == b"print('precious')\n"
    final = run / "Z_integrator" / "DIFF.patch"
    assert not final.is_symlink() and final.read_bytes() == b"diff --git a/x b/x\n"
    assert writer.violations == []


def test_a_link_in_attestations_cannot_wipe_the_ledger(site: tuple[Path, Path, Path]) -> None:
    run, _, _ = site
    ledger = run.parent / "factory_ledger.jsonl"
    ledger.write_bytes(b'{"event_type":"run.started"}\n')
    (run / "attestations").mkdir()
    for name in ("ledger_excerpt.jsonl", "ledger.sha256", "bundles.sha256", "report.sha256"):
        (run / "attestations" / old_temp_name(name)).symlink_to(ledger)
    writer = GuardedWriter(run)
    writer.write("attestations/ledger_excerpt.jsonl", b"")
    writer.write("attestations/ledger.sha256", b"0" * 64 + b"  x\n")
    assert ledger.read_bytes() == b'{"event_type":"run.started"}\n'


def test_a_guessed_temp_name_is_skipped_not_reused(
    site: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Even a link at the very name the writer draws next is never opened: the temp file is
    created exclusively without following links, and another name is drawn."""
    run, user_file, _ = site
    draws = iter(["feedfacefeedface", "feedfacefeedface", "0123456789abcdef"])
    monkeypatch.setattr("tools.codex.factory.infra.writer.secrets.token_hex", lambda n: next(draws))
    (run / ".app.py.feedfacefeedface.tmp").symlink_to(user_file)
    GuardedWriter(run).write("app.py", b"ours\n")
    assert user_file.read_bytes() == b"print('precious')\n"
    assert (run / "app.py").read_bytes() == b"ours\n"
    assert sorted(p.name for p in run.iterdir()) == [".app.py.feedfacefeedface.tmp", "app.py"]


class TempNames(GuardedWriter):
    """Notes every temporary name the writer tries (observed, not changed)."""

    tried: list[str]

    def _create_temp(self, rel: str, name: str, opener: Callable[[str], int]) -> tuple[int, str]:
        def noting(n: str) -> int:
            self.tried.append(n)
            return opener(n)

        return super()._create_temp(rel, name, noting)


def test_a_hard_link_at_the_drawn_temp_name_is_never_written_through(
    site: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A hard link is a plain file to O_NOFOLLOW: only the exclusive create (O_EXCL) keeps a
    hard link at the very name drawn from being opened and overwritten."""
    run, user_file, _ = site
    draws = iter(["feedfacefeedface", "feedfacefeedface", "0123456789abcdef"])
    monkeypatch.setattr("tools.codex.factory.infra.writer.secrets.token_hex", lambda n: next(draws))
    planted = run / ".app.py.feedfacefeedface.tmp"
    os.link(user_file, planted)
    GuardedWriter(run).write("app.py", b"ours\n")
    assert user_file.read_bytes() == b"print('precious')\n"
    assert planted.read_bytes() == b"print('precious')\n" and os.stat(planted).st_nlink == 2
    assert (run / "app.py").read_bytes() == b"ours\n" and os.stat(run / "app.py").st_nlink == 1


def test_hard_links_at_every_name_a_write_used_are_never_written_through(
    site: tuple[Path, Path, Path], mode: str
) -> None:
    """A name that can be guessed from an earlier write (or from the pid) is a name an attacker
    can plant a hard link at: each write draws names no earlier write used, and nothing planted
    at those names (nor at the old pid-based name) is written or blocks the write."""
    run, user_file, _ = site
    writer = TempNames(run)
    writer.tried = []
    writer.write("app.py", b"first\n")
    planted = [*writer.tried, old_temp_name("app.py"), ".app.py.tmp", "app.py.tmp"]
    for name in planted:
        os.link(user_file, run / name)
    for i in range(20):
        writer.write("app.py", f"write {i}\n".encode())
    assert user_file.read_bytes() == b"print('precious')\n"
    assert os.stat(user_file).st_nlink == 1 + len(planted)
    assert (run / "app.py").read_bytes() == b"write 19\n"
    assert len(set(writer.tried)) == len(writer.tried) == 21  # never a name twice, no retries
    assert writer.violations == []


# -- the final name and parent folders -----------------------------------------------------------


class SwappingWriter(GuardedWriter):
    """Swaps ``swap`` for a link to ``to`` right after every name check, and back before the
    next one: a hostile process racing the writer between its check and its use."""

    swap: Path
    to: Path

    def target(self, rel: str) -> Path:
        if self.swap.is_symlink():
            self.swap.unlink()
            (self.swap.parent / ".real").rename(self.swap)
        path = super().target(rel)
        if self.swap.exists():
            self.swap.rename(self.swap.parent / ".real")
        self.swap.symlink_to(self.to, target_is_directory=True)
        return path


def swapping(run: Path, swap: str, to: Path) -> SwappingWriter:
    writer = SwappingWriter(run)
    writer.swap = run / swap
    writer.to = to
    return writer


def test_a_parent_swapped_for_a_link_after_the_check_is_refused(
    site: tuple[Path, Path, Path],
) -> None:
    run, _, outside = site
    (run / "Z_integrator").mkdir()
    writer = swapping(run, "Z_integrator", outside)
    with pytest.raises(PolicyViolation, match="Z_integrator is a symbolic link"):
        writer.write("Z_integrator/STATUS.json", b"{}\n")
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert writer.violations == [
        {"path": "Z_integrator/STATUS.json", "reason": "Z_integrator is a symbolic link"}
    ]


def test_mkdir_never_creates_folders_through_a_swapped_parent(
    site: tuple[Path, Path, Path],
) -> None:
    run, _, outside = site
    (run / "Z_integrator").mkdir()
    writer = swapping(run, "Z_integrator", outside)
    with pytest.raises(PolicyViolation):
        writer.mkdir("Z_integrator/LOGS/deep")
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]


def test_a_parent_link_that_stays_inside_the_run_is_refused_too(
    site: tuple[Path, Path, Path], mode: str
) -> None:
    """A link from Z's LOGS into a worker's bundle would let the integrator overwrite the
    evidence it judges: every link on the way is refused, wherever it points."""
    run, _, _ = site
    (run / "A_worker" / "LOGS").mkdir(parents=True)
    (run / "A_worker" / "LOGS" / "agent.stdout.log").write_bytes(b"worker output\n")
    (run / "Z_integrator").mkdir()
    (run / "Z_integrator" / "LOGS").symlink_to(run / "A_worker" / "LOGS")
    writer = GuardedWriter(run)
    with pytest.raises(PolicyViolation, match="Z_integrator/LOGS is a symbolic link"):
        writer.write("Z_integrator/LOGS/agent.stdout.log", b"forged\n")
    assert (run / "A_worker" / "LOGS" / "agent.stdout.log").read_bytes() == b"worker output\n"
    with pytest.raises(PolicyViolation):
        writer.mkdir("Z_integrator/LOGS/sub")
    assert sorted(p.name for p in (run / "A_worker" / "LOGS").iterdir()) == ["agent.stdout.log"]


def test_a_link_at_the_final_name_is_replaced_never_written_through(
    site: tuple[Path, Path, Path], mode: str
) -> None:
    run, user_file, _ = site

    class LinkAfterCheck(GuardedWriter):
        def target(self, rel: str) -> Path:
            path = super().target(rel)
            if not path.is_symlink():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.unlink(missing_ok=True)
                path.symlink_to(user_file)
            return path

    LinkAfterCheck(run).write("Z_integrator/FINAL_REPORT.txt", b"report\n")
    final = run / "Z_integrator" / "FINAL_REPORT.txt"
    assert not final.is_symlink() and final.read_bytes() == b"report\n"
    assert user_file.read_bytes() == b"print('precious')\n"
    # A link already there when the name is checked is refused and recorded, as always.
    (run / "STATUS.json").symlink_to(user_file)
    writer = GuardedWriter(run)
    with pytest.raises(PolicyViolation):
        writer.write("STATUS.json", b"{}")
    assert writer.violations == [
        {"path": "STATUS.json", "reason": "resolves outside the run folder"}
    ]
    assert user_file.read_bytes() == b"print('precious')\n"


# -- errors ----------------------------------------------------------------------------------------

_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    sys.path.insert(0, sys.argv[2])
    from pathlib import Path
    from tools.codex.factory.errors import FactoryError
    from tools.codex.factory.infra.writer import GuardedWriter
    run = Path(sys.argv[1])
    GuardedWriter(run).write("Z_integrator/STATUS.json", b"old\\n")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # report EFBIG instead of dying
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    try:
        GuardedWriter(run).write("Z_integrator/STATUS.json", b"x" * 100_000)
    except FactoryError as exc:
        print(exc)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_failed_write_is_one_line_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    """A real write failure (the file-size limit, as a full disk would): one line naming the
    run-relative path and a fix; the old file is intact and no temp file is left."""
    run = tmp_path / "run"
    run.mkdir()
    res = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(run), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1, res.stdout
    assert lines[0].startswith("cannot write Z_integrator/STATUS.json in the run folder: ")
    assert "run the command again" in lines[0]
    assert str(tmp_path) not in lines[0]
    assert (run / "Z_integrator" / "STATUS.json").read_bytes() == b"old\n"
    assert sorted(p.name for p in (run / "Z_integrator").iterdir()) == ["STATUS.json"]


def test_a_folder_in_the_way_is_one_line(site: tuple[Path, Path, Path], mode: str) -> None:
    run, _, _ = site
    (run / "attestations" / "bundles.sha256").mkdir(parents=True)
    with pytest.raises(FactoryError) as exc:
        GuardedWriter(run).write("attestations/bundles.sha256", b"x")
    assert not isinstance(exc.value, PolicyViolation)
    msg = str(exc.value)
    assert msg.startswith("cannot write attestations/bundles.sha256 in the run folder")
    assert "\n" not in msg and "move it" in msg
    assert sorted(p.name for p in (run / "attestations").iterdir()) == ["bundles.sha256"]


# -- record ----------------------------------------------------------------------------------------


@needs_fifo
def test_record_refuses_a_fifo_instead_of_hanging(site: tuple[Path, Path, Path]) -> None:
    run, _, _ = site
    (run / "LOGS").mkdir()
    os.mkfifo(run / "LOGS" / "check.stdout.log")
    code = (
        "import sys; sys.path.insert(0, sys.argv[2]); from pathlib import Path\n"
        "from tools.codex.factory.errors import PolicyViolation\n"
        "from tools.codex.factory.infra.writer import GuardedWriter\n"
        "w = GuardedWriter(Path(sys.argv[1]))\n"
        "try:\n    w.record('LOGS/check.stdout.log')\n"
        "except PolicyViolation as exc:\n    print(exc)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(run), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "not a regular file (a FIFO)" in res.stdout, (res.stdout, res.stderr)


# -- clear -----------------------------------------------------------------------------------------


def nest(top: Path, depth: int) -> Path:
    """``depth`` nested folders below ``top`` (made one at a time: makedirs recurses too)."""
    path = top
    path.mkdir(parents=True, exist_ok=True)
    for _ in range(depth):
        path = path / "d"
        path.mkdir()
    return path


def test_clear_removes_a_deep_tree_and_unlinks_planted_links(
    site: tuple[Path, Path, Path], mode: str, deep_ok: Path
) -> None:
    run, user_file, outside = site
    z = run / "Z_integrator"
    deepest = nest(z / "LOGS", DEPTH)
    (deepest / "check.log").write_bytes(b"old\n")
    (deepest / "escape").symlink_to(outside, target_is_directory=True)
    (z / "STATUS.json").write_bytes(b"{}")
    (z / "evil").symlink_to(outside, target_is_directory=True)
    (z / "evil-file").symlink_to(user_file)
    writer = GuardedWriter(run)
    with pytest.raises(PolicyViolation):
        writer.clear("Z_integrator")
    assert list(z.iterdir()) == []
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert user_file.read_bytes() == b"print('precious')\n"
    assert [v["path"] for v in writer.violations] == [
        "Z_integrator/evil",
        "Z_integrator/evil-file",
    ]
    writer.write("Z_integrator/STATUS.json", b"fresh\n")  # the folder is usable again
    writer.violations.clear()
    writer.clear("Z_integrator")  # nothing planted: nothing refused
    writer.clear("missing")
    assert list(z.iterdir()) == [] and writer.violations == []


# -- walk and remove_tree -------------------------------------------------------------------------


def test_walk_and_bundle_hash_handle_1100_nested_folders(deep_ok: Path) -> None:
    bundle = deep_ok / "A_worker"
    deepest = nest(bundle, DEPTH)
    (deepest / "deep.txt").write_bytes(b"deep\n")
    (deepest / "up").symlink_to(bundle, target_is_directory=True)  # a loop if followed
    entries = list(fsutil.walk(bundle))
    assert len(entries) == DEPTH + 2
    assert entries[-1].rel.endswith("/d/up") and fsutil.is_link(entries[-1].st)
    digest = facts.bundle_hash(bundle)
    assert digest == facts.bundle_hash(bundle) and len(digest) == 64
    assert [rel for rel, _ in facts.file_hashes(bundle, "A_worker")] == [
        "A_worker/" + "d/" * DEPTH + "deep.txt"
    ]


def test_walk_never_follows_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    (root / "link").symlink_to(outside, target_is_directory=True)
    rels = [(e.rel, e.is_dir, e.is_regular) for e in fsutil.walk(root)]
    assert rels == [("link", False, False), ("sub", True, False), ("sub/f", False, True)]
    assert list(fsutil.walk(root / "link")) == []


def test_remove_tree_handles_1100_nested_folders_and_never_follows_links(
    deep_ok: Path, mode: str
) -> None:
    tmp_path = deep_ok
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"keep\n")
    top = tmp_path / "sandbox"
    deepest = nest(top, DEPTH)
    (deepest / "f").write_bytes(b"x")
    (deepest / "out").symlink_to(outside, target_is_directory=True)
    (top / "also-out").symlink_to(outside / "keep.txt")
    if hasattr(os, "mkfifo"):
        os.mkfifo(deepest / "fifo")
    fsutil.remove_tree(top)
    assert not top.exists()
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]


def test_remove_tree_of_a_link_is_refused_and_follows_nothing(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"keep\n")
    link = tmp_path / "sandbox"
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(fsutil.RemoveError, match="is a symbolic link, not a folder"):
        fsutil.remove_tree(link)
    assert link.is_symlink() and (outside / "keep.txt").read_bytes() == b"keep\n"
    fsutil.remove_tree(tmp_path / "missing")  # nothing there: nothing to do


def test_removal_retries_transient_errors_with_doubling_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file another process holds (Windows: access denied or a sharing violation) clears
    once that process lets go: retried with 0.1 s doubling waits, then one error naming it."""
    waits: list[float] = []
    monkeypatch.setattr(clock, "sleep", waits.append)
    victim = tmp_path / "held.log"
    victim.write_bytes(b"x")
    calls = 0

    def held_twice() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise PermissionError(13, "Permission denied", str(victim))
        victim.unlink()

    fsutil._retry(victim, held_twice)
    assert calls == 3 and not victim.exists()
    assert waits == [0.1, 0.2]

    waits.clear()

    def broken() -> None:
        raise OSError(errno.EIO, "Input/output error", str(victim))

    shared = OSError(13, "sharing violation")
    shared.winerror = 32  # type: ignore[attr-defined]
    assert fsutil._transient(shared)

    def sharing() -> None:
        raise shared

    with pytest.raises(fsutil.RemoveError) as exc:
        fsutil._retry(victim, sharing)
    msg = str(exc.value)
    assert msg.startswith(f"cannot remove {victim}: sharing violation (after 5 tries)")
    assert "\n" not in msg and "close any program using it" in msg
    assert waits == [0.1, 0.2, 0.4, 0.8]
    assert not fsutil._transient(FileExistsError(17, "exists"))
    with pytest.raises(fsutil.RemoveError):
        fsutil._retry(victim, broken)  # not transient: no retry, no wait
    assert waits == [0.1, 0.2, 0.4, 0.8]


# -- locks ---------------------------------------------------------------------------------------


def test_a_symlinked_lock_file_creates_nothing_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "created.lock"
    outside.parent.mkdir()
    lock_path = tmp_path / "locks" / "run.lock"
    lock_path.parent.mkdir()
    lock_path.symlink_to(outside)  # dangling: following it would create the file
    lock = ProcessLock(lock_path, 0, "run lock of r1", "tools/codex/runs/r1/locks/run.lock")
    with pytest.raises(BlockedError) as exc:
        lock.acquire()
    assert str(exc.value) == (
        "run lock of r1: tools/codex/runs/r1/locks/run.lock is a symbolic link; lock files "
        "must be regular files: remove it"
    )
    assert not outside.exists()
    lock_path.unlink()
    with lock:  # once removed, the lock works (and its thread lock was released)
        assert lock_path.is_file()
    lock.close()


@needs_fifo
def test_a_fifo_as_lock_file_is_refused(tmp_path: Path) -> None:
    lock_path = tmp_path / "run.lock"
    os.mkfifo(lock_path)
    with pytest.raises(BlockedError, match="is a FIFO; lock files must be regular files"):
        ProcessLock(lock_path, 0, "run lock").acquire()


# -- logs a child process writes -------------------------------------------------------------


def test_create_replaces_links_hard_links_and_fifos_never_writing_through(
    site: tuple[Path, Path, Path], mode: str
) -> None:
    """A log is written while its process runs, so it is created in place: whatever is at the
    name is unlinked first (a hard link to a user's file would otherwise be truncated)."""
    run, user_file, _ = site
    logs = run / "Z_integrator" / "LOGS"
    logs.mkdir(parents=True)
    os.link(user_file, logs / "hard.log")
    if hasattr(os, "mkfifo"):
        os.mkfifo(logs / "fifo.log")
    (logs / "old.log").write_bytes(b"an earlier attempt's output\n")

    class LinkAfterCheck(GuardedWriter):
        def target(self, rel: str) -> Path:
            path = super().target(rel)
            if rel.endswith("soft.log") and not path.is_symlink():
                path.symlink_to(user_file)
            return path

    writer = LinkAfterCheck(run)
    for name in ("hard.log", "fifo.log", "old.log", "soft.log", "new.log"):
        with writer.create(f"Z_integrator/LOGS/{name}") as fh:
            fh.write(b"child output\n")
        log = logs / name
        assert not log.is_symlink() and log.read_bytes() == b"child output\n"
    assert user_file.read_bytes() == b"print('precious')\n"
    assert writer.violations == []
    (logs / "soft.log").unlink()
    (logs / "soft.log").symlink_to(user_file)  # there when the name is checked: refused
    with pytest.raises(PolicyViolation):
        GuardedWriter(run).create("Z_integrator/LOGS/soft.log")
    assert user_file.read_bytes() == b"print('precious')\n"


def test_a_check_cannot_plant_a_hard_link_for_the_next_checks_log(tmp_path: Path) -> None:
    from tests.support.factory import launch_dry, read_json, run_dir, write_config
    from tests.support.repos import PINNED, make_repo, run_cli

    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    # A hard link passes every name check (a plain file inside the run folder); opening it
    # to write the log would truncate the file it shares with the victim.
    plant = f"import os; os.link({str(victim)!r}, '../Z_integrator/LOGS/check-second.stdout.log')"
    repo = make_repo(tmp_path / "repo")
    write_config(
        repo,
        {
            "checks": {
                "required": [
                    {"name": "first", "argv": ["{python}", "-c", plant]},
                    {"name": "second", "argv": ["{python}", "-c", "print('second ran')"]},
                ]
            }
        },
    )
    run_id = launch_dry(repo)
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr
    res = run_cli("--repo", str(repo), "--now", PINNED, "integrate", "--run-id", run_id)
    assert victim.read_bytes() == b"precious\n"
    log = run_dir(repo, run_id) / "Z_integrator" / "LOGS" / "check-second.stdout.log"
    assert not log.is_symlink() and log.read_bytes() == b"second ran\n", res.stdout + res.stderr
    doc = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")
    assert [c["rc"] for c in doc["checks"]] == [0, 0]


def test_launch_never_writes_the_runs_gitignore_through_a_link(tmp_path: Path) -> None:
    from tests.support.factory import RUNS, launch_dry
    from tests.support.repos import make_repo

    repo = make_repo(tmp_path / "repo")
    outside = tmp_path / "outside" / "created.txt"
    outside.parent.mkdir()
    (repo / RUNS).mkdir(parents=True)
    (repo / RUNS / ".gitignore").symlink_to(outside)  # dangling: following it creates it
    launch_dry(repo)
    assert not outside.exists()
