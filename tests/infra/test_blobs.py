"""gitops.blobs_at: base files by path, from the object store, in batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.repos import ROOT, git, make_repo
from tools.codex.factory.infra import fsutil, gitops

FILES = {
    "tests/test_a.py": "def test_a():\n    assert 1 + 1 == 2\n",
    "tests/with space.py": "x = 1\n",
    "tests/[star]*.py": "y = 2\n",
    "big.txt": "z" * 100,
}


@pytest.mark.parametrize("named", [True, False], ids=["pathspecs", "whole-tree"])
def test_blobs_by_path(tmp_path: Path, named: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not named:  # too many paths to name on a command line: the whole tree is listed
        monkeypatch.setattr(gitops, "PATHSPEC_CHARS", 0)
    repo = make_repo(tmp_path / "repo", FILES)
    if os.name != "nt":
        os.symlink("tests/test_a.py", repo / "link.py")
        git(repo, "add", "link.py")
        git(repo, "commit", "-q", "-m", "link")
    commit = git(repo, "rev-parse", "HEAD").strip()
    wanted = [*FILES, "missing.py", "tests", "link.py", "tests/*.py"]
    got = gitops.blobs_at(repo, commit, wanted, 50)
    assert got["tests/test_a.py"] == FILES["tests/test_a.py"].encode()
    assert got["tests/with space.py"] == b"x = 1\n"
    assert got["tests/[star]*.py"] == b"y = 2\n"  # taken literally, never as a pattern
    for absent in ("big.txt", "missing.py", "tests", "link.py", "tests/*.py"):
        assert got[absent] is None, absent  # too big, absent, a folder, a link, a pattern
    assert gitops.blobs_at(repo, commit, [], 50) == {}


@pytest.mark.parametrize(
    "var", ["GIT_GLOB_PATHSPECS", "GIT_ICASE_PATHSPECS", "GIT_NOGLOB_PATHSPECS"]
)
def test_blobs_literal_whatever_the_environment(
    tmp_path: Path, var: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's pathspec settings change no path: each is read as it is spelled."""
    repo = make_repo(tmp_path / "repo", {"tests/Test_a.py": "x = 1\n", "tests/[ab].py": "y\n"})
    commit = git(repo, "rev-parse", "HEAD").strip()
    monkeypatch.setenv(var, "1")
    got = gitops.blobs_at(repo, commit, ["tests/test_a.py", "tests/[ab].py", "tests/a.py"], 50)
    assert got == {"tests/test_a.py": None, "tests/[ab].py": b"y\n", "tests/a.py": None}


def _hide_object(repo: Path, path: str) -> None:
    """Remove ``path``'s blob from the object store (loose, as a fresh commit leaves it): only
    a read of the checked-out copy can still give its bytes."""
    oid = git(repo, "rev-parse", f"HEAD:{path}").strip()
    (repo / ".git" / "objects" / oid[:2] / oid[2:]).unlink()


def test_a_checked_out_copy_with_the_blobs_bytes_is_read_from_the_work_tree(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"tests/test_a.py": "a = 1\n", "tests/b.py": "b = 2\n"})
    _hide_object(repo, "tests/test_a.py")
    commit = git(repo, "rev-parse", "HEAD").strip()
    got = gitops.blobs_at(repo, commit, ["tests/test_a.py", "tests/b.py"], 50)
    assert got == {"tests/test_a.py": b"a = 1\n", "tests/b.py": b"b = 2\n"}


@pytest.mark.parametrize("change", ["edited", "crlf", "removed", "folder", "too-big"])
def test_a_copy_that_is_not_the_blob_is_never_used(tmp_path: Path, change: str) -> None:
    """Edited, converted, gone or replaced: the base's bytes come from git, and a copy
    hidden from git is None (never the work tree's bytes)."""
    repo = make_repo(tmp_path / "repo", {"t/a.py": "a = 1\nb = 2\n", "t/h.py": "h = 1\n"})
    commit = git(repo, "rev-parse", "HEAD").strip()
    for rel in ("t/a.py", "t/h.py"):
        copy = repo / rel
        if change == "edited":
            copy.write_bytes(b"a = 9\nb = 2\n")
        elif change == "crlf":
            copy.write_bytes(copy.read_bytes().replace(b"\n", b"\r\n"))
        elif change == "removed":
            copy.unlink()
        elif change == "folder":
            copy.unlink()
            copy.mkdir()
        else:
            copy.write_bytes(b"a = 1\nb = 2\n" + b"#" * 100)
    _hide_object(repo, "t/h.py")
    got = gitops.blobs_at(repo, commit, ["t/a.py", "t/h.py"], 50)
    assert got == {"t/a.py": b"a = 1\nb = 2\n", "t/h.py": None}


@pytest.mark.skipif(os.name == "nt", reason="links and FIFOs")
@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_a_link_or_fifo_in_place_of_the_copy_is_not_read(tmp_path: Path, kind: str) -> None:
    """A link to a file with the very bytes is not followed, and a FIFO cannot hang the
    read: the bytes come from git."""
    repo = make_repo(tmp_path / "repo", {"t/a.py": "a = 1\n"})
    commit = git(repo, "rev-parse", "HEAD").strip()
    (repo / "t/a.py").unlink()
    if kind == "link":
        (tmp_path / "same.py").write_bytes(b"a = 1\n")
        os.symlink(tmp_path / "same.py", repo / "t/a.py")
        _hide_object(repo, "t/a.py")
        assert gitops.blobs_at(repo, commit, ["t/a.py"], 50) == {"t/a.py": None}
    else:
        os.mkfifo(repo / "t/a.py")
        assert gitops.blobs_at(repo, commit, ["t/a.py"], 50) == {"t/a.py": b"a = 1\n"}


def _copy(repo: Path, name: str, oid: str) -> bytes | None:
    return gitops._checked_out(repo, [(name, oid)], 50).get(name)


def test_a_path_outside_the_work_tree_is_never_read(tmp_path: Path) -> None:
    """A name with '..', '.', an empty part, '\\' or ':' reaches no checked-out file, even
    one holding the very bytes the id names."""
    repo = make_repo(tmp_path / "repo", {"a.py": "a = 1\n"})
    (tmp_path / "outside.py").write_bytes(b"a = 1\n")
    oid = git(repo, "rev-parse", "HEAD:a.py").strip()
    assert _copy(repo, "a.py", oid) == b"a = 1\n"
    for name in ("../outside.py", "./a.py", "/a.py", "x//a.py", "x\\..\\a.py", "c:a.py"):
        assert _copy(repo, name, oid) is None, name


@pytest.mark.skipif(os.name == "nt", reason="links")
@pytest.mark.parametrize("where", ["folder", "top"])
def test_a_link_at_a_parent_folder_is_not_followed(tmp_path: Path, where: str) -> None:
    """A folder of the path that is a link leads out of the work tree (to a copy with the very
    bytes, or to /dev, a FIFO's writer, a mount that hangs): nothing there is opened, the
    bytes come from git."""
    repo = make_repo(tmp_path / "repo", {"t/u/a.py": "a = 1\n"})
    commit = git(repo, "rev-parse", "HEAD").strip()
    _hide_object(repo, "t/u/a.py")
    outside = tmp_path / "outside"
    (outside / "u").mkdir(parents=True)
    (outside / "u/a.py").write_bytes(b"a = 1\n")
    linked = repo / ("t/u" if where == "folder" else "t")
    shutil.rmtree(linked)
    os.symlink(outside / "u" if where == "folder" else outside, linked)
    assert (repo / "t/u/a.py").read_bytes() == b"a = 1\n"  # a path that leads out
    assert gitops.blobs_at(repo, commit, ["t/u/a.py"], 50) == {"t/u/a.py": None}


@pytest.mark.parametrize(
    "name", ["nul.py", "CON", "aux.test.py", "com1.py", "LPT\u00b9.py", "conin$", "a.py.", "a.py "]
)
def test_a_name_windows_reads_as_a_device_or_another_file_is_not_opened(
    tmp_path: Path, name: str
) -> None:
    """On Windows 'nul.py' opens the NUL device, 'com1.py' a serial port, and 'a.py.' or
    'a.py ' the file 'a.py': such a name is never opened, on any system, only read from git."""
    repo = make_repo(tmp_path / "repo", {f"t/{name}": "a = 1\n", "t/ok.py": "a = 1\n"})
    oid = git(repo, "rev-parse", "HEAD:t/ok.py").strip()
    assert _copy(repo, "t/ok.py", oid) == b"a = 1\n"
    assert _copy(repo, f"t/{name}", oid) is None
    commit = git(repo, "rev-parse", "HEAD").strip()
    assert gitops.blobs_at(repo, commit, [f"t/{name}"], 50) == {f"t/{name}": b"a = 1\n"}


_ASCII_CHILD = """
import sys
from pathlib import Path
from tools.codex.factory.infra import fsutil, gitops
assert sys.getfilesystemencoding() == "ascii", sys.getfilesystemencoding()
gitops.PATHSPEC_CHARS = 0  # the whole tree listed: no path on git's command line
print(ascii(gitops.blobs_at(Path(sys.argv[1]), sys.argv[2], ["t/\\u00e9.py"], 50)))
"""


@pytest.mark.skipif(os.name == "nt", reason="the file system encoding is UTF-8 there")
def test_a_name_the_file_system_encoding_cannot_spell_is_read_from_git(tmp_path: Path) -> None:
    """Under a C locale without UTF-8 mode Python names files in ASCII: 't/\u00e9.py' cannot
    be opened by name (an encoding error, never a traceback), so its bytes come from git."""
    repo = make_repo(tmp_path / "repo", {"t/\u00e9.py": "a = 1\n"})
    commit = git(repo, "rev-parse", "HEAD").strip()
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    env.pop("PYTHONIOENCODING", None)
    res = subprocess.run(
        [sys.executable, "-c", _ASCII_CHILD, str(repo), commit],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "{'t/\\xe9.py': b'a = 1\\n'}"


def test_copies_in_many_folders_are_read_each_through_its_own_folders(tmp_path: Path) -> None:
    """Folders are opened once while their paths follow one another, and only the current
    path's are held: paths that leave a folder and come back to it, sibling folders whose
    names share a prefix, a folder that is a link in the middle (its file from git) and a
    missing one; no descriptor is left open."""
    files = {
        "a/b/x.py": "x\n", "a/b/c/y.py": "y\n", "a/b/z.py": "z\n", "a/bb/w.py": "w\n",
        "a/l/v.py": "v\n", "a/m/u.py": "u\n", "top.py": "t\n", "gone/s.py": "s\n",
    }  # fmt: skip
    repo = make_repo(tmp_path / "repo", files)
    commit = git(repo, "rev-parse", "HEAD").strip()
    listed = [(p, git(repo, "rev-parse", f"HEAD:{p}").strip()) for p in files]
    shutil.rmtree(repo / "gone")
    if os.name != "nt":
        shutil.move(repo / "a/l", tmp_path / "l")
        os.symlink(tmp_path / "l", repo / "a/l")
    fds = _open_fds()
    copies = gitops._checked_out(repo, listed, 50)
    assert _open_fds() == fds
    readable = {p for p in files if not p.startswith("gone/")}
    if os.name != "nt":
        readable.discard("a/l/v.py")
    assert copies == {p: files[p].encode() for p in sorted(readable)}
    for p in sorted(readable):
        _hide_object(repo, p)
    got = gitops.blobs_at(repo, commit, list(files), 50)
    assert got == {p: files[p].encode() for p in files}  # the rest from git


def _open_fds() -> int:
    proc_fds = Path("/proc/self/fd")
    return len(list(proc_fds.iterdir())) if proc_fds.is_dir() else 0


_FEW_FDS_CHILD = """
import resource, sys
from pathlib import Path
from tools.codex.factory.infra import fsutil, gitops
resource.setrlimit(resource.RLIMIT_NOFILE, (48, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
repo, commit, rels = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
fds = len(list(Path("/proc/self/fd").iterdir())) if Path("/proc/self/fd").is_dir() else 0
print(ascii(gitops.blobs_at(repo, commit, rels, 50)))
assert fds == (len(list(Path("/proc/self/fd").iterdir())) if fds else 0), "descriptors left"
"""


@pytest.mark.skipif(os.name == "nt", reason="descriptor limits")
def test_a_deep_copy_is_read_under_a_small_descriptor_limit(tmp_path: Path) -> None:
    """A path deeper than the process may hold descriptors (macOS allows 256 by default)
    is still read from the work tree: only a few of its folders are held open at once, and
    none is left open after."""
    files = {
        "d/" * 120 + "a.py": "a\n", "d/" * 120 + "b.py": "b\n", "d/" * 40 + "e/c.py": "c\n",
        "d/" * 33 + "f.py": "f\n", "top.py": "t\n",
    }  # fmt: skip
    repo = make_repo(tmp_path / "repo", files)
    commit = git(repo, "rev-parse", "HEAD").strip()
    for rel in files:
        _hide_object(repo, rel)
    res = subprocess.run(
        [sys.executable, "-c", _FEW_FDS_CHILD, str(repo), commit, *files],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ascii({p: t.encode() for p, t in files.items()})


def test_the_reader_opens_nothing_outside_its_root(tmp_path: Path) -> None:
    """Whatever the caller hands it, a path with '..', '.' or an empty part, or an absolute
    one, reads nothing (not even a file inside the root reached a roundabout way)."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a/in.txt").write_bytes(b"in\n")
    (tmp_path / "outside.txt").write_bytes(b"out\n")
    odd = ["../outside.txt", "a/../../outside.txt", "a/../a/in.txt", "./a/in.txt", "a//in.txt"]
    got = fsutil.read_regular_files(root, ["a/in.txt", *odd, str(tmp_path / "outside.txt")], 50)
    assert got == {"a/in.txt": b"in\n", **dict.fromkeys(odd), str(tmp_path / "outside.txt"): None}


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="Linux /proc")
def test_a_read_shorter_than_asked_is_not_taken_for_the_files_end() -> None:
    """A regular file may answer a read with fewer bytes than asked before its end (/proc's
    do, a page at a time; so may a network or FUSE file system): the copy is read until a read
    brings nothing, never cut at the first short one."""
    whole = Path("/proc/self/smaps").read_bytes()
    assert len(whole) > 16 * 4096  # many short reads long
    got = fsutil.read_regular_files(Path("/proc/self"), ["smaps"], 1 << 24)["smaps"]
    assert got is not None and len(got) > len(whole) // 2, len(got or b"")
    assert fsutil.read_regular_files(Path("/proc/self"), ["smaps"], 4096)["smaps"] is None
