"""patchparse against real git output: touched() must equal what git itself reports."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.repos import git, make_repo
from tools.codex.factory.core import patchparse
from tools.codex.factory.core.patchparse import FileChange, Patch, PatchParseError, parse

BASE = {
    "README.md": "hello\n",
    "src/app.py": "print('hi')\nprint('there')\n",
    "docs/guide.md": "one\ntwo\nthree\nfour\nfive\n",
}


def gitb(repo: Path, *args: str) -> bytes:
    """git's stdout as bytes (patches are bytes)."""
    res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout


def move(repo: Path, src: str, dst: str) -> None:
    (repo / dst).parent.mkdir(parents=True, exist_ok=True)
    git(repo, "mv", src, dst)


def staged_patch(repo: Path, *args: str) -> bytes:
    git(repo, "add", "-A")
    return gitb(repo, "diff", "--cached", *args)


def git_paths(repo: Path, *args: str) -> list[str]:
    """Every path ``git diff --cached --name-status`` reports (both sides of R and C)."""
    fields = gitb(repo, "diff", "--cached", "--name-status", "-z", *args).split(b"\0")
    out: set[str] = set()
    i = 0
    while i < len(fields) and fields[i]:
        width = 2 if fields[i][:1] in (b"R", b"C") else 1
        out.update(f.decode("utf-8") for f in fields[i + 1 : i + 1 + width])
        i += 1 + width
    return sorted(out)


def only(patch: Patch) -> FileChange:
    assert len(patch.files) == 1, patch.files
    return patch.files[0]


def check_against_git(repo: Path, *args: str) -> Patch:
    """Parse the staged diff (also CRLF-converted) and compare with git's own list."""
    data = staged_patch(repo, *args)
    patch = parse(data)
    assert patch.touched() == git_paths(repo, *args)
    if any(f.binary for f in patch.files):
        # git does not read a CRLF-mangled binary section as binary: neither do we
        with pytest.raises(PatchParseError, match="binary patch line"):
            parse(data.replace(b"\n", b"\r\n"))
        return patch
    crlf = parse(data.replace(b"\n", b"\r\n"))
    assert crlf.touched() == patch.touched()
    assert [(f.old_path, f.new_path, f.status) for f in crlf.files] == [
        (f.old_path, f.new_path, f.status) for f in patch.files
    ]
    assert b"".join(f.raw for f in patch.files) == data  # sections tile plain git output
    return patch


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", BASE)


# -- real git patches ------------------------------------------------------------------------
def test_modify(base: Path) -> None:
    (base / "src/app.py").write_text("print('bye')\n", encoding="utf-8")
    f = only(check_against_git(base))
    assert (f.old_path, f.new_path, f.status, f.binary) == (
        "src/app.py",
        "src/app.py",
        "modified",
        False,
    )
    assert f.old_mode == f.new_mode == "100644"


def test_add_and_delete(base: Path) -> None:
    (base / "new/file.txt").parent.mkdir()
    (base / "new/file.txt").write_text("x\n", encoding="utf-8")
    (base / "empty.txt").write_bytes(b"")
    (base / "README.md").unlink()
    patch = check_against_git(base)
    by = {f.new_path or f.old_path: f for f in patch.files}
    assert by["new/file.txt"].status == "added"
    assert by["new/file.txt"].old_path is None
    assert by["new/file.txt"].new_mode == "100644"
    assert by["empty.txt"].status == "added"  # header only: no ---/+++ lines at all
    assert by["README.md"].status == "deleted"
    assert by["README.md"].new_path is None
    assert by["README.md"].old_mode == "100644"


def test_rename(base: Path) -> None:
    move(base, "docs/guide.md", "manual/guide.md")
    (base / "manual/guide.md").write_text("one\ntwo\nthree\nfour\nFIVE\n", encoding="utf-8")
    f = only(check_against_git(base, "-M"))
    assert (f.old_path, f.new_path, f.status) == ("docs/guide.md", "manual/guide.md", "renamed")
    assert f.similarity is not None and 50 <= f.similarity < 100


def test_pure_rename_has_no_hunks(base: Path) -> None:
    move(base, "README.md", "READ ME.md")
    f = only(check_against_git(base, "-M"))
    assert (f.old_path, f.new_path, f.similarity) == ("README.md", "READ ME.md", 100)


def test_copy(base: Path) -> None:
    (base / "docs/copy.md").write_text(
        (base / "docs/guide.md").read_text("utf-8"), encoding="utf-8"
    )
    patch = check_against_git(base, "-C", "--find-copies-harder")
    f = only(patch)
    assert (f.old_path, f.new_path, f.status) == ("docs/guide.md", "docs/copy.md", "copied")
    assert patch.touched() == ["docs/copy.md", "docs/guide.md"]


def test_mode_change(base: Path) -> None:
    git(base, "update-index", "--chmod=+x", "src/app.py")
    data = gitb(base, "diff", "--cached")
    f = only(parse(data))
    assert f.status == "mode"
    assert (f.old_mode, f.new_mode) == ("100644", "100755")
    assert parse(data).touched() == git_paths(base) == ["src/app.py"]


def test_mode_change_with_content_is_modified(base: Path) -> None:
    (base / "src/app.py").write_text("x\n", encoding="utf-8")
    git(base, "add", "-A")
    git(base, "update-index", "--chmod=+x", "src/app.py")
    f = only(parse(gitb(base, "diff", "--cached")))
    assert (f.status, f.old_mode, f.new_mode) == ("modified", "100644", "100755")


def test_mode_change_unquoted_name_with_spaces_header_only(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"foo bar.txt": "x\n", "a b/c d.sh": "y\n"})
    git(repo, "update-index", "--chmod=+x", "foo bar.txt", "a b/c d.sh")
    data = gitb(repo, "diff", "--cached")
    assert b"diff --git a/foo bar.txt b/foo bar.txt\n" in data
    patch = parse(data)
    assert patch.touched() == git_paths(repo) == ["a b/c d.sh", "foo bar.txt"]
    assert {f.status for f in patch.files} == {"mode"}


@pytest.mark.parametrize("binary_flag", [True, False])
def test_binary_add_modify_delete(tmp_path: Path, binary_flag: bool) -> None:
    repo = make_repo(tmp_path / "r", {"keep.txt": "k\n"})
    (repo / "img.bin").write_bytes(b"\x00\x01\x02" * 40)
    (repo / "gone.bin").write_bytes(b"\x00gone")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bins")
    (repo / "img.bin").write_bytes(b"\x00\x01\x03" * 41)
    (repo / "new one.bin").write_bytes(bytes(range(256)))
    (repo / "x and y.bin").write_bytes(b"\x00and")
    (repo / "gone.bin").unlink()
    args = ("--binary",) if binary_flag else ()
    patch = check_against_git(repo, *args)
    assert all(f.binary for f in patch.files)
    status = {f.new_path or f.old_path: f.status for f in patch.files}
    assert status == {
        "gone.bin": "deleted",
        "img.bin": "modified",
        "new one.bin": "added",
        "x and y.bin": "added",
    }
    marker = b"GIT binary patch" if binary_flag else b"Binary files "
    assert marker in b"".join(f.raw for f in patch.files)


def test_binary_rename(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"keep.txt": "k\n"})
    (repo / "old name.bin").write_bytes(b"\x00" + b"payload" * 30)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bin")
    move(repo, "old name.bin", "new name.bin")
    (repo / "new name.bin").write_bytes(b"\x00" + b"payload" * 30 + b"!")
    for args in (("-M",), ("-M", "--binary")):
        f = only(check_against_git(repo, *args))
        assert (f.old_path, f.new_path, f.status, f.binary) == (
            "old name.bin",
            "new name.bin",
            "renamed",
            True,
        )


@pytest.mark.parametrize("quotepath", ["true", "false"])
def test_spaces_and_non_ascii(tmp_path: Path, quotepath: str) -> None:
    repo = make_repo(
        tmp_path / "r", {"café naïve.txt": "a\n", "foo bar.txt": "b\n", "ü/x y.md": "c\n"}
    )
    git(repo, "config", "core.quotepath", quotepath)
    (repo / "café naïve.txt").write_text("A\n", encoding="utf-8")
    (repo / "foo bar.txt").write_text("b\nb2\n", encoding="utf-8")
    move(repo, "ü/x y.md", "dir ñ/renamed file.md")
    (repo / "ünï cödé.txt").write_text("new\n", encoding="utf-8")
    data = staged_patch(repo, "-M")
    if quotepath == "true":
        assert b'"a/caf\\303\\251 na\\303\\257ve.txt"' in data
    else:
        assert "a/café naïve.txt".encode() in data
    patch = check_against_git(repo, "-M")
    assert patch.touched() == [
        "café naïve.txt",
        "dir ñ/renamed file.md",
        "foo bar.txt",
        "ü/x y.md",
        "ünï cödé.txt",
    ]


def test_crlf_patch_never_puts_cr_in_paths(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a b.txt": "1\n", "x.txt": "1\n", "m.sh": "m\n"})
    (repo / "a b.txt").write_text("2\n", encoding="utf-8")
    move(repo, "x.txt", "y z.txt")
    git(repo, "add", "-A")
    git(repo, "update-index", "--chmod=+x", "m.sh")
    data = gitb(repo, "diff", "--cached", "-M").replace(b"\n", b"\r\n")
    patch = parse(data)
    assert patch.touched() == ["a b.txt", "m.sh", "x.txt", "y z.txt"]
    assert not any("\r" in p for p in patch.touched())
    assert all(f.raw.endswith(b"\r\n") for f in patch.files)


def test_format_patch_two_commits(base: Path) -> None:
    (base / "src/app.py").write_text("v1\n", encoding="utf-8")
    git(base, "commit", "-q", "-am", "first change\n\nA body line.\n--- not a separator\n")
    (base / "src/app.py").write_text("v2\n", encoding="utf-8")
    (base / "docs/new.md").write_text("n\n", encoding="utf-8")
    git(base, "add", "-A")
    git(base, "commit", "-q", "-m", "second change")
    mail = gitb(base, "format-patch", "--stdout", "HEAD~2")
    assert mail.count(b"\n-- \n") == 2 and mail.startswith(b"From ")
    patch = parse(mail)
    assert patch.touched() == sorted(
        set(git(base, "diff", "--name-only", "HEAD~2", "HEAD").split("\n")) - {""}
    )
    assert [f.new_path for f in patch.files] == ["src/app.py", "docs/new.md", "src/app.py"]
    sections = patch.sections_by_path()
    assert sections["src/app.py"] == patch.files[0].raw + patch.files[2].raw
    assert b"-- \n" not in sections["src/app.py"]
    assert parse(mail.replace(b"\n", b"\r\n")).touched() == patch.touched()


def test_format_patch_without_signature(base: Path) -> None:
    (base / "README.md").write_text("one\n", encoding="utf-8")
    git(base, "commit", "-q", "-am", "one")
    (base / "src/app.py").write_text("two\n", encoding="utf-8")
    git(base, "commit", "-q", "-am", "two")
    mail = gitb(base, "format-patch", "--stdout", "--no-signature", "HEAD~2")
    assert parse(mail).touched() == ["README.md", "src/app.py"]


def test_header_lookalikes_inside_hunks_are_content(base: Path) -> None:
    evil = "--- a/evil\n+++ b/evil\ndiff --git a/evil b/evil\n@@ -1 +1 @@\nrename from evil\n"
    (base / "docs/guide.md").write_text("-- a/evil\n++ b/evil\n" + evil, encoding="utf-8")
    git(base, "add", "-A")
    git(base, "commit", "-q", "-m", "evil content")
    (base / "docs/guide.md").write_text("safe\n", encoding="utf-8")
    data = staged_patch(base)
    assert b"\n---- a/evil\n" in data and b"\n-diff --git a/evil b/evil\n" in data
    patch = check_against_git(base)
    assert patch.touched() == ["docs/guide.md"]
    # and as added lines
    (base / "docs/guide.md").write_text(evil, encoding="utf-8")
    assert check_against_git(base).touched() == ["docs/guide.md"]


def test_no_newline_at_end_of_file(base: Path) -> None:
    (base / "README.md").write_bytes(b"no newline")
    (base / "src/app.py").write_bytes(b"print('hi')\nprint('there')")
    data = staged_patch(base)
    assert data.count(b"\\ No newline at end of file") == 2
    assert check_against_git(base).touched() == ["README.md", "src/app.py"]


def test_identical_sections_compare_byte_for_byte(tmp_path: Path) -> None:
    one = make_repo(tmp_path / "one", BASE)
    two = make_repo(tmp_path / "two", BASE)
    for repo, extra in ((one, "a.txt"), (two, "b.txt")):
        (repo / "README.md").write_text("same change\n", encoding="utf-8")
        (repo / extra).write_text(extra, encoding="utf-8")
    s1 = parse(staged_patch(one)).sections_by_path()
    s2 = parse(staged_patch(two)).sections_by_path()
    assert s1["README.md"] == s2["README.md"]
    assert set(s1) == {"README.md", "a.txt"} and set(s2) == {"README.md", "b.txt"}


def test_rename_sections_map_both_paths(base: Path) -> None:
    move(base, "README.md", "docs/README.md")
    patch = parse(staged_patch(base, "-M"))
    sections = patch.sections_by_path()
    assert sections["README.md"] == sections["docs/README.md"] == patch.files[0].raw
    assert list(sections) == sorted(sections)


# -- hand-written patches --------------------------------------------------------------------
def test_empty_and_whitespace_patches() -> None:
    for data in (b"", b"\n", b"  \r\n\t\n"):
        patch = parse(data)
        assert patch.files == [] and patch.touched() == [] and patch.sections_by_path() == {}


def test_plain_unified_diff() -> None:
    data = (
        b"--- a/src/x.py\t2024-01-01 00:00:00.000000000 +0000\n"
        b"+++ b/src/x.py\t2024-01-02 00:00:00.000000000 +0000\n"
        b"@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
        b"--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+n\n"
        b"diff -u a/old.txt b/old.txt\n"
        b"--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-o\n"
    )
    patch = parse(data)
    assert [(f.old_path, f.new_path, f.status) for f in patch.files] == [
        ("src/x.py", "src/x.py", "modified"),
        (None, "new.txt", "added"),
        ("old.txt", None, "deleted"),
    ]
    assert patch.touched() == ["new.txt", "old.txt", "src/x.py"]


def test_paths_are_returned_exactly_not_judged() -> None:
    data = (
        b"diff --git a/../x b/../x\n--- a/../x\n+++ b/../x\n@@ -1 +1 @@\n-a\n+b\n"
        b"diff --git a/.git/config b/.git/config\nold mode 100644\nnew mode 100755\n"
        b"diff --git a/a//b b/a//b\n--- a/a//b\n+++ b/a//b\n@@ -1 +1 @@\n-a\n+b\n"
    )
    assert parse(data).touched() == ["../x", ".git/config", "a//b"]
    plain = b"--- a/C:/w.txt\n+++ b/C:/w.txt\n@@ -1 +1 @@\n-a\n+b\n"
    assert parse(plain).touched() == ["C:/w.txt"]


@pytest.mark.parametrize(
    ("quoted", "expected"),
    [
        (r'"a/t\tab" "b/t\tab"', "t\tab"),
        (r'"a/new\nline" "b/new\nline"', "new\nline"),
        (r'"a/q\"uote" "b/q\"uote"', 'q"uote'),
        (r'"a/back\\slash" "b/back\\slash"', "back\\slash"),
        (r'"a/\a\b\f\r\v" "b/\a\b\f\r\v"', "\a\b\f\r\v"),
        (r'"a/caf\303\251" "b/caf\303\251"', "café"),
        (r'"a/\346\227\245\346\234\254" "b/\346\227\245\346\234\254"', "日本"),
    ],
)
def test_c_quoted_names(quoted: str, expected: str) -> None:
    q = quoted.split(" ", 1)[0].encode()
    data = (
        b"diff --git " + quoted.encode() + b"\n--- " + q + b"\n+++ " + q.replace(b'"a/', b'"b/', 1)
    )
    data += b"\n@@ -1 +1 @@\n-a\n+b\n"
    assert parse(data).touched() == [expected]
    mode_only = b"diff --git " + quoted.encode() + b"\nold mode 100644\nnew mode 100755\n"
    assert parse(mode_only).touched() == [expected]


def test_rename_with_mixed_quoting() -> None:
    data = (
        b'diff --git a/plain name.txt "b/caf\\303\\251 name.txt"\n'
        b"similarity index 100%\n"
        b"rename from plain name.txt\n"
        b'rename to "caf\\303\\251 name.txt"\n'
    )
    f = only(parse(data))
    assert (f.old_path, f.new_path, f.status) == ("plain name.txt", "café name.txt", "renamed")


def test_unquoted_header_split_picks_equal_halves() -> None:
    data = b"diff --git a/x b/y b/x b/y\nold mode 100644\nnew mode 100755\n"
    assert parse(data).touched() == ["x b/y"]


MALFORMED: list[tuple[bytes, int, str]] = [
    (b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @\n-a\n+b\n", 4, "malformed hunk header"),
    (b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n", 4, "truncated hunk"),
    (
        b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\ndiff --git a/y b/y\n",
        6,
        "truncated hunk",
    ),
    (b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n-b\n+c\n", 6, "does not fit"),
    (b"diff --git a/x c\nold mode 100644\nnew mode 100755\n", 1, "cannot resolve"),
    (b"diff --git a/x b/y\nold mode 100644\nnew mode 100755\n", 1, "cannot resolve"),
    (
        b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\nhello\n",
        7,
        "expected a file header",
    ),
    (b"diff --git a/x b/x\nsome junk\n", 1, "no header or content"),
    (b"diff --git a/x b/x\nindex 1111111..2222222\nsome junk\n", 3, "expected a file header"),
    (b"diff --git a/x b/x\n--- a/x\nfoo\n", 3, "expected a '+++' line"),
    (b"diff --git a/x b/x\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n", 1, "does not name"),
    (b"diff --git a/x b/x\n--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n", 1, "different files"),
    (b"diff --git a/x b/x\n--- a/x\n+++ b/x\n", 4, "expected a hunk header"),
    (b"diff --git a/x b/x\n--- a/x\n+++ b/x\nnot a hunk\n", 4, "expected a hunk header"),
    (b"@@ -1 +1 @@\n-a\n+b\n", 1, "without a file header"),
    (b"hello\nworld\n", 1, "no file header"),
    (b'diff --git "a/x\\q" "b/x\\q"\nold mode 100644\nnew mode 100755\n', 1, "cannot resolve"),
    (b'diff --git a/x b/x\n--- "a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n', 2, "unterminated quoted"),
    (b'diff --git a/x b/x\n--- "a/\\q"\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n', 2, "bad escape"),
    (b"diff --git a/x b/x\n--- x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", 2, "no leading"),
    (
        b"diff --git a/x b/x\nnew file mode 100644\n--- a/x\n+++ b/x\n@@ -0,0 +1 @@\n+a\n",
        3,
        "/dev/null",
    ),
    (
        b"diff --git a/x b/x\ndeleted file mode 100644\n--- a/x\n+++ b/x\n@@ -1 +0,0 @@\n-a\n",
        4,
        "/dev/null",
    ),
    (
        b"diff --git a/x b/x\n--- /dev/null\n+++ /dev/null\n@@ -1 +1 @@\n-a\n+b\n",
        1,
        "both creates and deletes",
    ),
    (b"diff --git a/x b/y\nrename from x\n", 1, "must come together"),
    (b"diff --git a/x b/y\nrename from x\nrename to z\n", 1, "does not name"),
    (b"diff --git a/x b/x\nold mode 1006444\n", 2, "bad file mode"),
    (b"diff --git a/x b/x\nold mode 100644\nold mode 100755\n", 3, "duplicate"),
    (b"diff --git a/x b/x\nsimilarity index 120%\n", 2, "bad similarity"),
    (b"diff --git a/x b/x\nindex zzz..yyy\n", 2, "bad index"),
    (b"diff --git a/x b/x\nGIT binary patch\nliteral 5\nzzz\n\n", 4, "malformed binary"),
    (b"diff --git a/x b/x\nGIT binary patch\nnonsense\n", 3, "expected 'literal N'"),
    (b"diff --git a/x b/x\nBinary files a/y and b/y differ\n", 2, "cannot resolve the path"),
    (
        b"diff --git a/x b/y\nrename from x\nrename to y\nBinary files a/x and b/z differ\n",
        4,
        "does not match",
    ),
    (b"diff --git a/x\xff b/x\xff\nold mode 100644\nnew mode 100755\n", 1, "not valid UTF-8"),
    (b"diff --git a/x b/x\n--- a/x\r\r\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", 2, "control character"),
    (b"diff --cc x\n", 1, "combined"),
    (b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,99999999999 +1 @@\n", 4, "malformed hunk"),
    (b"diff --git " + b"a/x " * 5000 + b"\n", 1, "longer than"),
]


@pytest.mark.parametrize(("data", "line", "what"), MALFORMED)
def test_malformed_patches_name_the_line(data: bytes, line: int, what: str) -> None:
    with pytest.raises(PatchParseError) as exc:
        parse(data)
    message = str(exc.value)
    assert message.startswith(f"line {line}: "), message
    assert what in message, message
    assert "\n" not in message
    assert exc.value.line == line
    assert isinstance(exc.value, ValueError)


def test_signature_then_garbage_is_mail_trailer() -> None:
    data = b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n-- \n2.39.5\n\n"
    assert parse(data).touched() == ["x"]
    assert parse(data).files[0].raw == data[: data.index(b"-- \n")]


# -- properties ------------------------------------------------------------------------------
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_a_patch_or_patch_parse_error(data: bytes) -> None:
    with contextlib.suppress(PatchParseError):
        parse(data)


HEADERISH = st.sampled_from(
    [
        b"diff --git a/x b/x\n",
        b"--- a/x\n",
        b"+++ b/x\n",
        b"@@ -1 +1 @@\n",
        b"@@ -1,2 +1 @@\n",
        b"-a\n",
        b"+b\n",
        b" c\n",
        b"\\ No newline at end of file\n",
        b"new file mode 100644\n",
        b"deleted file mode 100644\n",
        b"rename from x\n",
        b"rename to y\n",
        b"copy from x\n",
        b"copy to y\n",
        b"old mode 100644\n",
        b"new mode 100755\n",
        b"GIT binary patch\n",
        b"literal 3\n",
        b"HcmV?d00001\n",
        b"\n",
        b"Binary files a/x and b/x differ\n",
        b"--- /dev/null\n",
        b"+++ /dev/null\n",
        b'diff --git "a/\\303\\251" "b/\\303\\251"\n',
        b"-- \n",
        b"From 0123456789012345678901234567890123456789 Mon Sep 17 00:00:00 2001\n",
        b"similarity index 90%\n",
        b"index 0000000..1111111 100644\n",
        b"\r\n",
    ]
)


@given(st.lists(HEADERISH, max_size=25))
def test_header_soup_gives_a_patch_or_patch_parse_error(parts: list[bytes]) -> None:
    try:
        patch = parse(b"".join(parts))
    except PatchParseError:
        return
    for f in patch.files:
        assert f.old_path is not None or f.new_path is not None
        assert f.raw.startswith((b"diff --git ", b"--- "))


@pytest.fixture
def rich_patch(tmp_path: Path) -> bytes:
    repo = make_repo(tmp_path / "rich", {**BASE, "b.bin": "\x00bin", "sp ace.txt": "s\n"})
    (repo / "src/app.py").write_text("changed\n", encoding="utf-8")
    (repo / "b.bin").write_bytes(b"\x00bin2")
    move(repo, "sp ace.txt", "café naïve.txt")
    (repo / "README.md").unlink()
    (repo / "new.txt").write_text("n\n", encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "update-index", "--chmod=+x", "docs/guide.md")
    return gitb(repo, "diff", "--cached", "-M", "--binary")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_real_patches_give_a_patch_or_patch_parse_error(
    rich_patch: bytes, data: st.DataObject
) -> None:
    lines = rich_patch.splitlines(keepends=True)
    kind = data.draw(st.sampled_from(["truncate", "drop", "flip", "dup"]))
    if kind == "truncate":
        mutated = rich_patch[: data.draw(st.integers(0, len(rich_patch)))]
    elif kind == "drop":
        k = data.draw(st.integers(0, len(lines) - 1))
        mutated = b"".join(lines[:k] + lines[k + 1 :])
    elif kind == "dup":
        k = data.draw(st.integers(0, len(lines) - 1))
        mutated = b"".join(lines[: k + 1] + lines[k:])
    else:
        k = data.draw(st.integers(0, len(rich_patch) - 1))
        b = data.draw(st.integers(0, 255))
        mutated = rich_patch[:k] + bytes([b]) + rich_patch[k + 1 :]
    with contextlib.suppress(PatchParseError):
        parse(mutated)


NAMES = [
    "a.txt",
    "dir/b.py",
    "foo bar.txt",
    "dir two/x y.md",
    "café naïve.txt",
    "ünï/cödé.txt",
    "x and y.bin",
    "-dash.txt",
    "a b c/d e f",
]
OPS = st.lists(
    st.tuples(
        st.sampled_from(["modify", "delete", "add", "rename", "chmod", "binary"]),
        st.sampled_from(NAMES),
        st.sampled_from(NAMES),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=15, deadline=None)
@given(
    ops=OPS,
    flags=st.sampled_from([(), ("-M",), ("-M", "--binary"), ("-C", "--find-copies-harder")]),
)
def test_random_real_patches_match_git(
    ops: list[tuple[str, str, str]], flags: tuple[str, ...]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp) / "r", {n: f"{n}\n" + "line\n" * 8 for n in NAMES[:6]})
        chmod: list[str] = []
        for op, name, other in ops:
            path, target = repo / name, repo / other
            if op == "modify" and path.exists():
                path.write_text(path.read_text("utf-8") + "more\n", encoding="utf-8")
            elif op == "delete" and path.exists():
                path.unlink()
            elif op == "add":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("added\n" * 3, encoding="utf-8")
            elif op == "rename" and path.exists() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                path.rename(target)
            elif op == "chmod" and path.exists():
                chmod.append(name)
            elif op == "binary":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"\x00\x01" + name.encode())
        git(repo, "add", "-A")
        present = [n for n in chmod if (repo / n).exists()]
        if present:
            git(repo, "update-index", "--chmod=+x", "--", *present)  # names may start with "-"
        data = gitb(repo, "diff", "--cached", *flags)
        patch = parse(data)
        assert patch.touched() == git_paths(repo, *flags)
        if any(f.binary for f in patch.files):
            with pytest.raises(PatchParseError, match="binary patch line"):
                parse(data.replace(b"\n", b"\r\n"))
        else:
            assert parse(data.replace(b"\n", b"\r\n")).touched() == patch.touched()
        assert b"".join(f.raw for f in patch.files) == data


# --------------------------------------------------------------------------------------------
# The byte walk over hunk bodies reads exactly as the line-by-line reading it replaced (kept
# here as the oracle: each body line sliced through ``_Lines``, no cached text, no jumps).


class _EveryLine(patchparse._Lines):
    def __getitem__(self, i: int) -> bytes:
        self._reach(i + 1)
        k = i - self.first
        return self.data[self.starts[k] : self.starts[k + 1]]


class _LineByLine(patchparse._Parser):
    def __init__(self, data: bytes, max_files: int | None = None) -> None:
        super().__init__(data, max_files)
        self.lines = _EveryLine(data)

    def text(self, i: int) -> bytes:
        line = self.lines[i]
        line = line[:-1] if line.endswith(b"\n") else line
        return line[:-1] if line.endswith(b"\r") else line

    def hunk(self, body: patchparse._Body) -> None:
        head = self.i
        m = patchparse._HUNK.fullmatch(self.text(head))
        if m is None:
            raise self.fail(head, f"malformed hunk header {patchparse._show(self.text(head))}")
        old = 1 if m[2] is None else int(m[2])
        new = 1 if m[4] is None else int(m[4])
        body.counts.append((old, new))
        self.i += 1
        while old > 0 or new > 0:
            if self.i >= self.n:
                raise self.fail(
                    head,
                    f"truncated hunk: the patch ends with {old} old and {new} new lines still due",
                )
            line = self.lines[self.i]
            c = line[:1]
            if c == b" " or line in (b"\n", b"\r\n"):
                if old == 0 or new == 0:
                    raise self.hunk_mismatch(head, "context")
                old, new, body.context = old - 1, new - 1, body.context + 1
            elif c == b"-":
                if old == 0:
                    raise self.hunk_mismatch(head, "'-'")
                old, body.deleted = old - 1, body.deleted + 1
            elif c == b"+":
                if new == 0:
                    raise self.hunk_mismatch(head, "'+'")
                new -= 1
                if body.first_added is None:
                    body.first_added, body.first_added_at = line, self.i
                body.added += 1
            elif c != b"\\":
                raise self.fail(
                    self.i,
                    f"truncated hunk (header at line {head + 1} wants {old} old and {new} "
                    f"new lines more) but found {patchparse._show(self.text(self.i))}",
                )
            else:
                self.marker(body)
            self.i += 1
        while self.i < self.n and self.lines[self.i].startswith(b"\\"):
            self.marker(body)
            self.i += 1


def _outcome(parser: patchparse._Parser, max_lines: int | None) -> object:
    try:
        patch = parser.run(max_lines)
    except patchparse.PatchLimitError as exc:
        return ("limit", exc.line, exc.rule, str(exc))
    except PatchParseError as exc:
        return ("error", exc.line, str(exc))
    return ("read", patch.files, patch.stray)


_BODY_LINE = st.sampled_from(
    [b" c\n", b"-d\n", b"+a\n", b"\n", b"\r\n", b"\r", b"\\ No newline at end of file\n",
     b"+a\r\n", b" c\r\n", b"-d", b"+a", b"x\n", b"@@ -1 +1 @@\n", b"\r\r\n", b"+\n", b"\\\n"]
)  # fmt: skip
_SECTION_HEAD = st.sampled_from(
    [b"diff --git a/f b/f\n--- a/f\n+++ b/f\n",
     b"diff --git a/f b/f\nindex 1234567..89abcde 100644\n--- a/f\n+++ b/f\n",
     b"diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n",
     b"diff --git a/d b/d\ndeleted file mode 100644\n--- a/d\n+++ /dev/null\n",
     b"--- a/p\n+++ b/p\n",
     b"diff --git a/f b/g\nsimilarity index 90%\nrename from f\nrename to g\n--- a/f\n+++ b/g\n"]
)  # fmt: skip
_SECTION_TAIL = st.sampled_from(
    [b"", b"\n\n\n", b"-- \n2.40.0\n", b"GIT binary patch\nliteral 0\nHcmV?d00001\n\n",
     b"Binary files a/f and b/f differ\n", b"From abc Mon Sep 17 00:00:00 2001\n", b"junk\n"]
)  # fmt: skip


@st.composite
def _hunk_text(draw: st.DrawFn) -> bytes:
    old, new = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    olds = draw(st.sampled_from([f"-1,{old}", "-1" if old == 1 else f"-0,{old}"]))
    news = draw(st.sampled_from([f"+1,{new}", "+1" if new == 1 else f"+0,{new}"]))
    end = draw(st.sampled_from([b"\n", b"\r\n"]))
    return f"@@ {olds} {news} @@".encode() + end + b"".join(draw(st.lists(_BODY_LINE, max_size=12)))


@st.composite
def _mangled_patch(draw: st.DrawFn) -> bytes:
    parts: list[bytes] = []
    for _ in range(draw(st.integers(1, 3))):
        parts += [draw(_SECTION_HEAD), *draw(st.lists(_hunk_text(), max_size=3))]
        parts.append(draw(_SECTION_TAIL))
    data = b"".join(parts)
    if draw(st.booleans()):
        data = data.replace(b"\n", b"\r\n")
    for _ in range(draw(st.integers(0, 2))):  # cut, insert, delete a byte, join two lines
        at, how = draw(st.integers(0, len(data))), draw(st.integers(0, 3))
        extra = draw(st.sampled_from([b"\n", b"\r", b" ", b"+", b"-", b"\\", b"\n" * 20]))
        data = [data[:at], data[:at] + extra + data[at:], data[:at] + data[at + 1 :],
                data[:at] + data[at:].replace(b"\n", b"", 1)][how]  # fmt: skip
    return data


@settings(
    derandomize=True, max_examples=600, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(_mangled_patch(), st.one_of(st.none(), st.integers(0, 40)), st.integers(0, 3))
def test_hunk_byte_walk_reads_as_line_by_line(
    data: bytes, max_lines: int | None, files: int
) -> None:
    """Same files, counts, errors and line numbers on any bytes: CR/CRLF, no final newline,
    '\\' markers, empty context lines, truncated hunks, counts of 0, binary after hunks."""
    max_files = files or None
    assert _outcome(patchparse._Parser(data, max_files), max_lines) == _outcome(
        _LineByLine(data, max_files), max_lines
    )


SECTION_PAIR = (
    b"diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n"
    b"--- a/p\n+++ b/p\n@@ -1 +1 @@\n-a\n+b\n"
)
_LINK_LINE = st.sampled_from(
    [b"+t\n", b"+t", b"+t\r\n", b"-o\n", b"\\ No newline at end of file\n", b"\\\n", b"\n"]
)


@settings(
    derandomize=True, max_examples=300, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(
    st.sampled_from(["-0,0 +1", "-1 +1", "-1 +1,2", "-0,0 +1,0"]), st.lists(_LINK_LINE, max_size=5)
)
def test_link_target_byte_walk_reads_as_line_by_line(counts: str, lines: list[bytes]) -> None:
    """The first '+' line and a '\\' marker right after it (a link's target) read the same."""
    mode = (
        b"new file mode 120000\n--- /dev/null"
        if counts.startswith("-0")
        else b"index 1234567..89abcde 120000\n--- a/l"
    )
    data = (
        b"diff --git a/l b/l\n"
        + mode
        + b"\n+++ b/l\n@@ "
        + counts.encode()
        + b" @@\n"
        + b"".join(lines)
    )
    assert _outcome(patchparse._Parser(data), None) == _outcome(_LineByLine(data), None)


@pytest.mark.parametrize("tail", [b"", b"+x\n", b"bad\n", b"\\ a\n\\ b\n", b" c\n"])
def test_a_huge_hunk_reads_as_line_by_line(tail: bytes) -> None:
    body = b"".join(b" c%d\n" % i for i in range(3000))
    head = b"diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1,3000 +1,3001 @@\n"
    for data in (head + body + tail, head + body[:-1], head + body + tail + head + b"+y\n"):
        assert _outcome(patchparse._Parser(data), None) == _outcome(_LineByLine(data), None)


@given(st.binary(max_size=30).flatmap(lambda b: st.sampled_from([b, b"index " + b, b"new " + b])))
def test_extended_header_prefix_is_the_first_that_starts_the_line(line: bytes) -> None:
    first = next((p for p, _ in patchparse._EXT_PREFIXES if line.startswith(p)), None)
    found = patchparse._EXT_START.match(line)
    assert (None if found is None else found[0]) == first


@given(st.binary(max_size=20))
def test_control_bytes_are_those_below_space_and_del(name: bytes) -> None:
    has = any(c < 0x20 or c == 0x7F for c in name)
    assert (patchparse._CONTROL.search(name) is not None) == has


@settings(
    derandomize=True, max_examples=400, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(_mangled_patch(), st.one_of(st.none(), st.integers(0, 40)), st.integers(0, 3))
@example(SECTION_PAIR, None, 1)  # a plain section after a git one is the second
def test_a_patch_refused_on_a_limit_was_known_to_be_at_risk(
    data: bytes, max_lines: int | None, files: int
) -> None:
    """Validation shows git early only patches ``may_exceed`` clears: parse never refuses one
    of those on a limit."""
    max_files = files or None
    refused = _outcome(patchparse._Parser(data, max_files), max_lines)[0] == "limit"
    assert not refused or patchparse.may_exceed(data, max_lines, max_files)
