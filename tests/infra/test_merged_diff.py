"""gitops.merged_diff: the integrated diff, taken in two halves where that gives the same
bytes as one `git diff`, and whole where it might not."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.repos import git, make_repo
from tools.codex.factory.infra import gitops

# Names whose byte order differs from a per-folder order ('-' and '.' sort before '/', '0'
# after it), a file beside folders, non-ASCII, and one folder holding most of the paths.
BASE = {
    "a+": "top file\n",
    "a.b": "dotted\n",
    **{f"a-b/f{i:03d}": f"ab {i}\n" for i in range(140)},
    **{f"a/b/c{i:03d}": f"abc {i}\n" for i in range(140)},
    **{f"a0/x{i:03d}": f"a0 {i}\n" for i in range(140)},
    **{f"\u00e9t\u00e9/y{i:03d}": f"ete {i}\n" for i in range(140)},
    **{f"src/pkg{i % 3}/m{i:03d}.py": f"m = {i}\n" for i in range(60)},
}


def _sandbox(tmp_path: Path, repo: Path) -> tuple[Path, str]:
    commit = git(repo, "rev-parse", "HEAD").strip()
    sandbox = tmp_path / "sandbox"

    def write(rel: str, data: bytes) -> None:
        target = sandbox / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    gitops.create_sandbox(sandbox, repo, commit, write)
    return sandbox, commit


def _staged(
    tmp_path: Path, change: Callable[[Path], None], base: dict[str, str] = BASE
) -> tuple[Path, str]:
    """A sandbox whose index holds ``change`` made to ``base``, as a patch applied to it."""
    repo = make_repo(tmp_path / "repo", base)
    change(repo)
    git(repo, "add", "-A")
    patch = git(repo, "diff", "--cached", "--binary", "--full-index", "HEAD").encode()
    git(repo, "reset", "-q", "--hard", "HEAD")
    sandbox, commit = _sandbox(tmp_path, repo)
    assert gitops.apply_to_index(sandbox, patch).rc == 0
    return sandbox, commit


def _modify(repo: Path) -> None:
    for rel in BASE:
        (repo / rel).write_text(BASE[rel] + "changed\n", encoding="utf-8")


def _rewrite_all(repo: Path) -> None:
    for path in repo.rglob("*"):
        if path.is_file() and ".git" not in path.relative_to(repo).parts:
            path.write_text("x\n", encoding="utf-8")


def _modify_and_add(repo: Path) -> None:
    _modify(repo)
    for i in range(20):
        (repo / "a0" / f"new{i}").write_text("new\n", encoding="utf-8")
    (repo / "zz").mkdir()
    (repo / "zz" / "bin").write_bytes(bytes(range(256)) * 4)


def _modify_and_delete(repo: Path) -> None:
    _modify(repo)
    for i in range(20):
        (repo / "a0" / f"x{i:03d}").unlink()


def _add_and_delete(repo: Path) -> None:
    """A rename git pairs across the halves: never split."""
    _modify(repo)
    (repo / "a+").unlink()
    (repo / "zz").mkdir()
    (repo / "zz" / "moved").write_text("top file\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("change", "split"),
    [
        (_modify, True),
        (_modify_and_add, True),
        (_modify_and_delete, True),
        (_add_and_delete, False),
    ],
    ids=["modified", "added", "deleted", "renamed"],
)
def test_merged_diff_is_the_whole_diff(
    tmp_path: Path, change: Callable[[Path], None], split: bool
) -> None:
    sandbox, commit = _staged(tmp_path, change)
    merged, changed = gitops.merged_diff(sandbox, commit)
    assert merged == gitops.diff_cached(sandbox, commit)
    listed = git(sandbox, "diff", "--cached", "--name-only", "--no-renames", "-z", commit)
    assert changed == sorted(p for p in listed.split("\0") if p)
    halves = gitops._split(gitops._name_status(sandbox, commit))
    assert (halves is not None) == split
    if halves is not None:
        first, second = halves
        assert first and second and not set(first) & set(second)
        whole = gitops.diff_cached(sandbox, commit)
        assert gitops.diff_cached(sandbox, commit, *first) != whole  # a real split


def test_one_folder_is_split_below_it(tmp_path: Path) -> None:
    files = {f"src/p{i % 4}/f{i:03d}": f"{i}\n" for i in range(600)}
    sandbox, commit = _staged(tmp_path, _rewrite_all, files)
    halves = gitops._split(gitops._name_status(sandbox, commit))
    assert halves == (["src/p0", "src/p1"], ["src/p2", "src/p3"])
    assert gitops.merged_diff(sandbox, commit)[0] == gitops.diff_cached(sandbox, commit)


def test_halves_are_ranges_of_byte_order_not_of_folder_order(tmp_path: Path) -> None:
    """'a-b' and 'a.b' sort before 'a/' but after folder 'a': a cut by folder names would
    put 'a.b' after 'a/x' in the joined diff, with as many sections as the whole one."""
    files = {
        **{f"a/x{i:03d}": f"{i}\n" for i in range(300)},
        **{f"a-b/y{i:03d}": f"{i}\n" for i in range(300)},
        "a.b": "dotted\n",
        **{f"a0/z{i:03d}": f"{i}\n" for i in range(300)},
    }
    sandbox, commit = _staged(tmp_path, _rewrite_all, files)
    halves = gitops._split(gitops._name_status(sandbox, commit))
    assert halves == (["a-b", "a.b", "a"], ["a0"])
    whole = gitops.diff_cached(sandbox, commit)
    assert gitops.merged_diff(sandbox, commit)[0] == whole
    assert b"".join(gitops.diff_cached(sandbox, commit, *h) for h in halves) == whole


def test_folders_alike_but_for_case_are_never_split_apart() -> None:
    """On a case-insensitive checkout 'Docs' would also match 'docs': one diff, whole."""
    entries = [(b"M", f"{d}/f{i:03d}".encode()) for d in ("Docs", "docs") for i in range(300)]
    assert gitops._split(entries) is None
    assert gitops._split([(b"M", f"d{j}/f{i:03d}".encode()) for j in (1, 2) for i in range(300)])


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("e\u0301t\u00e9".encode(), "\u00e9t\u00e9".encode()),  # macOS git composes arguments
        (b"dir.", b"dir"),  # Windows strips trailing dots
        (b"a\\b", b"a/b"),  # Git for Windows reads '\\' as '/'
        (b"\xff", b"\xed\xb3\xbf"),  # not UTF-8: Windows re-encodes it
    ],
    ids=["nfd-nfc", "trailing-dot", "backslash", "not-utf8"],
)
def test_names_git_reads_alike_somewhere_are_never_split_apart(first: bytes, second: bytes) -> None:
    """On macOS `git diff -- <NFD name>` also matches the NFC folder: the halves would hold
    that folder twice and the other not at all, as many sections as one diff."""
    entries = [(b"M", d + f"/f{i:03d}".encode()) for d in (first, second) for i in range(300)]
    assert gitops._split(sorted(entries, key=lambda e: e[1])) is None


def test_names_past_a_windows_command_line_are_never_split() -> None:
    """7000 two-letter names with a space, before a folder as big: the first half's git
    would need 7000 quoted names, 35000 characters, where Windows allows 32767."""
    short = [(b"M", f" {chr(0x4E00 + i)}".encode()) for i in range(7000)]
    big = [(b"M", f"\uff5a/f{i:04d}".encode()) for i in range(7000)]
    assert gitops._split([*short, *big]) is None
    assert gitops._split([*short[:2000], *big[:2000]])  # 10000 characters: split


def test_small_or_type_changing_diffs_are_taken_whole() -> None:
    many = [(b"M", f"d{j}/f{i:03d}".encode()) for j in (1, 2) for i in range(300)]
    assert gitops._split(many[: gitops.SPLIT_DIFF_MIN - 1]) is None
    assert gitops._split([*many, (b"T", b"d3/link")]) is None


def test_a_half_that_misses_sections_falls_back_to_the_whole_diff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What git gives is counted: halves that do not add up are never used."""
    sandbox, commit = _staged(tmp_path, _modify)
    whole = gitops.diff_cached(sandbox, commit)
    real = gitops._split

    def short(entries: list[tuple[bytes, bytes]]) -> tuple[list[str], list[str]] | None:
        halves = real(entries)
        assert halves is not None
        return halves[0][:-1], halves[1]  # a folder left out

    monkeypatch.setattr(gitops, "_split", short)
    assert gitops.merged_diff(sandbox, commit)[0] == whole
