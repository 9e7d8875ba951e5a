"""Our reading of a patch against git's own: git_view(parse(p)) must equal apply_view(p).

Real patches (git diff, format-patch, --no-prefix, GNU diff) must agree exactly; a patch that
git reads differently from us (a timestamp after a space) must show as a difference.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.repos import git, make_repo
from tools.codex.factory.core import gitbinary
from tools.codex.factory.core.gitview import (
    GitSection,
    GitView,
    compare_views,
    read_apply_output,
)
from tools.codex.factory.core.patchparse import Patch, PatchParseError, git_view, parse
from tools.codex.factory.infra import gitops

BASE = {
    "README.md": "hello\n",
    "src/app.py": "".join(f"line {i}\n" for i in range(40)),
    "src/util/helpers.py": "".join(f"helper {i}\n" for i in range(30)),
    "docs/guide/intro.md": "".join(f"intro {i}\n" for i in range(30)),
    "docs/old/notes.txt": "".join(f"note {i}\n" for i in range(30)),
    "gone.txt": "bye\n",
    "empty-gone.txt": "",
    "run.sh": "echo hi\n",
    "rewrite.txt": "".join(f"original line {i}\n" for i in range(100)),
    "sp ace/file name.txt": "space\n",
    "tab\there.txt": "tab\n",
    'quo"te.txt': "quote\n",
    "back\\slash.txt": "backslash\n",
    "café/naïve.txt": "utf8\n",
    "-leading.txt": "dash\n",
    "link-old": "",
}


def gitb(repo: Path, *args: str) -> bytes:
    res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout


def readings(data: bytes) -> tuple[Patch, GitView]:
    return parse(data), gitops.apply_view(data)


def assert_agree(data: bytes) -> Patch:
    """Both readers read ``data`` and agree on every name, count and summary line."""
    patch, gits = readings(data)
    assert gits.error is None, gits.error
    assert compare_views(git_view(patch), gits) == []
    assert patch.touched() == gits.paths()
    return patch


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A repository whose index holds every kind of change against HEAD."""
    repo = make_repo(tmp_path / "repo", BASE)
    (repo / "bin.dat").write_bytes(bytes(range(256)) * 64)
    (repo / "secret.bin").write_bytes(b"\x00" + os.urandom(3000))
    (repo / "link-old").unlink()
    os.symlink("README.md", repo / "link-old")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "binaries and a link")
    w = repo
    (w / "src/app.py").write_text("".join(f"line {i}\n" for i in range(1, 41)), encoding="utf-8")
    (w / "new dir").mkdir()
    (w / "new dir/fresh.txt").write_text("fresh\n", encoding="utf-8")
    (w / "empty-new.txt").write_bytes(b"")
    (w / "gone.txt").unlink()
    (w / "empty-gone.txt").unlink()
    (w / "src/util/tools.py").write_bytes((w / "src/util/helpers.py").read_bytes())
    (w / "src/util/helpers.py").unlink()  # rename in one folder
    (w / "docs/new").mkdir()
    shutil.move(w / "docs/old/notes.txt", w / "docs/new/notes.txt")  # {old => new}/notes.txt
    (w / "docs/guide/copy.md").write_bytes((w / "docs/guide/intro.md").read_bytes() + b"more\n")
    (w / "run.sh").chmod(0o755)
    (w / "rewrite.txt").write_text("".join(f"brand new {i}\n" for i in range(99)), "utf-8")
    (w / "sp ace/file name.txt").write_text("space 2\n", encoding="utf-8")
    shutil.move(w / "tab\there.txt", w / "tab\tmoved.txt")
    (w / 'quo"te.txt').write_text("quote 2\n", encoding="utf-8")
    shutil.move(w / "back\\slash.txt", w / "sp ace/back\\slash.txt")
    (w / "café/naïve.txt").write_text("utf8 2\n", encoding="utf-8")
    (w / "-leading.txt").write_text("dash 2\n", encoding="utf-8")
    os.symlink("src/app.py", w / "link-new")
    (w / "link-old").unlink()
    os.symlink("docs", w / "link-old")
    data = bytearray((w / "bin.dat").read_bytes())
    data[100:110] = b"0123456789"
    (w / "bin.dat").write_bytes(bytes(data))  # a delta
    (w / "new.bin").write_bytes(b"\x00\x01" + os.urandom(500))  # a literal
    (w / "README.md").unlink()
    os.symlink("gone.txt", w / "README.md")  # a type change: delete + create
    git(repo, "add", "-A")
    sub = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{sub},vendor/sub")
    return repo


DIFF = ("--binary", "--full-index", "-M", "-C", "--find-copies-harder")


def test_real_git_diff_agrees(corpus: Path) -> None:
    data = gitb(corpus, "diff", "--cached", *DIFF)
    assert b"rename from src/util/helpers.py" in data and b"copy to docs/guide/copy.md" in data
    assert b"GIT binary patch\ndelta " in data and b"GIT binary patch\nliteral " in data
    assert b"new file mode 120000" in data and b"Subproject commit" in data
    patch = assert_agree(data)
    summary = gitops.apply_view(data).summary
    # apply.c abbreviates a common leading folder only (diff --stat also a common tail)
    assert " rename docs/{old/notes.txt => new/notes.txt} (100%)" in summary
    assert " rename src/util/{helpers.py => tools.py} (100%)" in summary
    assert any(line.startswith(" copy docs/guide/{intro.md => copy.md}") for line in summary)
    assert " mode change 100644 => 100755 run.sh" in summary
    assert {"tab\there.txt", "tab\tmoved.txt", 'quo"te.txt', "-leading.txt"} <= set(patch.touched())
    assert gitops.apply_view(data.replace(b"\n", b"\r\n")).error is not None  # git refuses


def test_real_git_diff_rewrite_and_no_renames_agree(corpus: Path) -> None:
    assert_agree(gitb(corpus, "diff", "--cached", "--binary", "--full-index", "-B", "-M"))
    assert_agree(gitb(corpus, "diff", "--cached", "--binary", "--no-renames"))
    assert_agree(gitb(corpus, "diff", "--cached"))  # "Binary files ... differ"
    data = gitb(corpus, "diff", "--cached", "-B", "--no-renames")
    assert b"dissimilarity index" in data
    assert_agree(data)
    assert any(line.startswith(" rewrite rewrite.txt") for line in gitops.apply_view(data).summary)


def test_format_patch_agrees(corpus: Path) -> None:
    git(corpus, "commit", "-q", "-m", "everything\n\nbody\n--- a/not/a/patch\n")
    (corpus / "src/app.py").write_text("last\n", encoding="utf-8")
    git(corpus, "commit", "-q", "-am", "second")
    mail = gitb(corpus, "format-patch", "--stdout", *DIFF, "HEAD~3")
    assert mail.startswith(b"From ") and mail.count(b"\n-- \n") == 3
    assert_agree(mail)


def test_no_prefix_agrees(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"pkg/a.py": "a\n", "pkg/sub/b.py": "b\n", "top": "t\n"})
    (repo / "pkg/a.py").write_text("A\n", encoding="utf-8")
    (repo / "pkg/sub/new.py").write_text("new\n", encoding="utf-8")
    (repo / "pkg/sub/b.py").unlink()
    git(repo, "add", "-A")
    data = gitb(repo, "diff", "--cached", "--no-prefix")
    assert b"diff --git pkg/a.py pkg/a.py" in data
    # git apply -p1 strips "pkg/" as it would strip "a/": both readers do the same
    assert assert_agree(data).touched() == ["a.py", "sub/b.py", "sub/new.py"]
    # a rename's names are never stripped by git, the header's are: we refuse the mismatch
    git(repo, "commit", "-q", "-m", "one")
    shutil.move(repo / "pkg/a.py", repo / "pkg/sub/moved.py")
    git(repo, "add", "-A")
    with pytest.raises(PatchParseError, match="does not name"):
        parse(gitb(repo, "diff", "--cached", "-M", "--no-prefix"))
    # a top-level name has no component to strip: both refuse
    (repo / "top").write_text("T\n", encoding="utf-8")
    git(repo, "add", "-A")
    data = gitb(repo, "diff", "--cached", "--no-prefix", "--", "top")
    with pytest.raises(PatchParseError):
        parse(data)
    assert gitops.apply_view(data).error is not None


def test_gnu_diff_agrees(tmp_path: Path) -> None:
    old, new = tmp_path / "a", tmp_path / "b"
    for root, files in (
        (old, {"x.txt": "1\n2\n3\n", "sp ace.txt": "s\n", "gone.txt": "g\n", "d/é.txt": "e\n"}),
        (new, {"x.txt": "1\nTWO\n3\n", "sp ace.txt": "S\n", "new.txt": "n\n", "d/é.txt": "E\n"}),
    ):
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text, encoding="utf-8")
    env = {**os.environ, "TZ": "UTC", "LC_ALL": "C"}
    res = subprocess.run(
        ["diff", "-Nru", "a", "b"], cwd=tmp_path, capture_output=True, env=env, check=False
    )
    assert res.returncode == 1, res.stderr
    data = res.stdout
    assert b"\t1970-01-01 00:00:00" in data  # -N marks created and deleted files
    patch = assert_agree(data)
    status = {f.new_path or f.old_path: f.status for f in patch.files}
    assert status == {
        "x.txt": "modified",
        "sp ace.txt": "modified",
        "gone.txt": "deleted",
        "new.txt": "added",
        "d/é.txt": "modified",
    }


def test_timestamp_after_a_space_is_a_disagreement() -> None:
    """git strips a date after a SPACE from a plain diff's name; we keep it: block."""
    data = (
        b"--- a/src/secret.py 2024-01-01 00:00:00.000000000 +0000\n"
        b"+++ b/src/secret.py 2024-01-01 00:00:00.000000000 +0000\n"
        b"@@ -1 +1 @@\n-a\n+b\n"
    )
    patch, gits = readings(data)
    assert gits.error is None and gits.paths() == ["src/secret.py"]
    assert patch.touched() != gits.paths()
    diffs = compare_views(git_view(patch), gits)
    assert diffs and all("'src/secret.py'" in d for d in diffs)
    assert "2024-01-01" in diffs[0] and diffs[0].startswith("file section 1: ")


@pytest.mark.parametrize(
    ("data", "git_paths"),
    [
        # '--- /dev/null' in a git section without 'new file mode': git reads "dev/null"
        (b"diff --git a/x b/x\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+a\n", ["dev/null", "x"]),
        # a header line git skips (nothing follows it), then a real section
        (
            b"diff --git a/hidden b/hidden\n\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
            ["y"],
        ),
        # '---' and '+++' naming different files in a plain diff: git prefers the shorter
        (b"--- a/x\n+++ b/x.orig\n@@ -1 +1 @@\n-a\n+b\n", ["x"]),
        # a doubled slash git squashes
        (b"diff --git a/p//q b/p//q\n--- a/p//q\n+++ b/p//q\n@@ -1 +1 @@\n-a\n+b\n", ["p/q"]),
        # a timestamp after spaces (whitespace damage)
        (
            b"--- a/x   2024-01-01 00:00:00\n+++ b/x   2024-01-01 00:00:00\n@@ -1 +1 @@\n-a\n+b\n",
            ["x"],
        ),
    ],
)
def test_git_reads_these_differently_so_we_refuse_or_differ(
    data: bytes, git_paths: list[str]
) -> None:
    gits = gitops.apply_view(data)
    assert gits.error is None and gits.paths() == git_paths
    try:
        patch = parse(data)
    except PatchParseError:
        return
    assert patch.touched() != git_paths
    assert compare_views(git_view(patch), gits)


def test_git_view_of_a_hidden_old_name() -> None:
    """A git section whose '---' and '+++' differ without a rename reads one file and writes
    another: only numstat -R shows the one it reads."""
    data = b"diff --git a/x b/y\n--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n"
    gits = gitops.apply_view(data)
    assert gits.sections == (GitSection("y", "x", 1, 1),) and gits.paths() == ["x", "y"]
    with pytest.raises(PatchParseError):
        parse(data)


def test_apply_view_reports_what_git_refuses() -> None:
    assert gitops.apply_view(b"") == GitView()
    assert gitops.apply_view(b"hello\n").error is not None  # no patch in it
    corrupt = b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n-a\n+b\n"
    assert gitops.apply_view(corrupt).error is not None
    # git stops at a corrupt binary hunk yet exits 0 for the section before it
    good = b"diff --git a/y b/y\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n"
    bad = b"diff --git a/z b/z\nindex 1111111..2222222\nGIT binary patch\nliteral 5\nA00000\n\n"
    view = gitops.apply_view(good + bad)
    assert view.error is not None and "corrupt binary patch" in view.error
    assert compare_views(git_view(parse(good)), view) == [
        f"git cannot read the patch: {view.error}"
    ]


def test_apply_view_ignores_the_callers_repository_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "r")
    monkeypatch.setenv("GIT_DIR", str(repo / ".git"))
    monkeypatch.chdir(repo)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "cfg"))
    (tmp_path / "cfg").write_text("[apply]\n\twhitespace = error\n", encoding="utf-8")
    data = b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b \n"
    assert gitops.apply_view(data) == GitView(sections=(GitSection("x", "x", 1, 1),))


def test_read_apply_output_shapes() -> None:
    view = read_apply_output(
        b"1\t2\ta\0-\t-\tb\nc\0 create mode 100644 b\nc\n",
        b"-\t-\tb\nc\0" + b"2\t1\ta\0",
    )
    assert view == GitView(
        sections=(GitSection("a", "a", 1, 2), GitSection("b\nc", "b\nc", None, None)),
        summary=(" create mode 100644 b", "c"),
    )
    assert read_apply_output(b"1\t1\ta\0", b"").error is not None
    assert read_apply_output(b"1\t1\ta\0", b"1\t2\ta\0").error is not None
    assert read_apply_output(b"1\t1\ta\0 x", b"1\t1\ta\0").error is not None
    assert read_apply_output(b"1\t1\t\xff\0", b"1\t1\t\xff\0").paths() == ["\udcff"]


def test_compare_views_names_each_difference() -> None:
    ours = GitView(sections=(GitSection("a", "a", 1, 1), GitSection("b", "old", 0, 0)))
    gits = GitView(
        sections=(GitSection("a", "a", None, None),), summary=(" rename old => b (90%)",)
    )
    assert compare_views(ours, gits) == [
        "we read 2 file sections, git read 1",
        "file section 1: we read +1 -1 lines, git read binary",
        "file section 2: only we read one, naming 'b'",
        "summary line 1: we read nothing, git read 'rename old => b (90%)'",
    ]
    assert compare_views(ours, ours) == []


# -- generated patches -----------------------------------------------------------------------
ESCAPES = {7: "a", 8: "b", 9: "t", 10: "n", 11: "v", 12: "f", 13: "r", 34: '"', 92: "\\"}
COMPONENT = st.text(
    alphabet=st.sampled_from([*"abcXY01._-{}=> ", "\t", '"', "\\", "é", "日", "\n"]),
    min_size=1,
    max_size=5,
).filter(lambda c: c not in (".", ".."))
NAME = st.one_of(
    st.sampled_from(
        [
            "a.txt",
            "src/app.py",
            "src/lib/app.py",
            "sp ace/x y.txt",
            "café/naïve.txt",
            "-lead",
            "d/{a => b}/c",
            "t\tab",
            'q"uote',
        ]
    ),
    st.lists(COMPONENT, min_size=1, max_size=3).map("/".join),
)


def quoted(text: str) -> bytes:
    out = bytearray(b'"')
    for c in text.encode("utf-8"):
        if c in ESCAPES:
            out += b"\\" + ESCAPES[c].encode()
        elif c < 0x20 or c >= 0x7F:
            out += b"\\%03o" % c
        else:
            out.append(c)
    return bytes(out + b'"')


def must_quote(text: str) -> bool:
    return any(c < 0x20 or c in (0x22, 0x5C, 0x7F) for c in text.encode("utf-8"))


def name_bytes(prefix: str, name: str, force_quote: bool) -> bytes:
    if must_quote(name) or force_quote:
        return quoted(prefix + name)
    return (prefix + name).encode("utf-8")


@st.composite
def hunks(draw: st.DrawFn, kind: str) -> bytes:
    """One or two hunks; 'add'/'delete' give a whole-file hunk."""
    if kind == "add":
        n = draw(st.integers(1, 3))
        return f"@@ -0,0 +1,{n} @@\n".encode() + b"".join(b"+n%d\n" % i for i in range(n))
    if kind == "delete":
        n = draw(st.integers(1, 3))
        return f"@@ -1,{n} +0,0 @@\n".encode() + b"".join(b"-o%d\n" % i for i in range(n))
    out = b""
    start = 1
    for _ in range(draw(st.integers(1, 2))):
        ctx = draw(st.integers(0, 2))
        dels = draw(st.integers(0, 2))
        adds = draw(st.integers(0 if dels else 1, 2))
        old, new = ctx + dels, ctx + adds
        out += f"@@ -{start},{old} +{start},{new} @@\n".encode()
        out += b" c\n" * ctx + b"-d\n" * dels + b"+a\n" * adds
        start += old + 10
    return out


def binary_block(data: bytes) -> bytes:
    lines = gitbinary.encode_lines(zlib.compress(data))
    return (
        b"GIT binary patch\nliteral %d\n" % len(data) + b"".join(x + b"\n" for x in lines) + b"\n"
    )


MODE_CHANGE = st.sampled_from(
    [b"", b"old mode 100644\nnew mode 100755\n", b"old mode 100755\nnew mode 100644\n"]
)


@st.composite
def git_section(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            [
                "modify",
                "add",
                "delete",
                "empty-add",
                "rename",
                "copy",
                "mode",
                "binary",
                "link",
                "rewrite",
                "binary-differ",
                "link-delete",
            ]
        )
    )
    name = draw(NAME)
    other = draw(NAME.filter(lambda n: n != name))
    q = draw(st.booleans())
    mode = draw(st.sampled_from(["100644", "100755"]))
    a, b = name_bytes("a/", name, q), name_bytes("b/", name, q)
    if kind in ("rename", "copy"):
        b = name_bytes("b/", other, q)
    out = b"diff --git " + a + b" " + b + b"\n"
    if kind == "modify":
        change = draw(MODE_CHANGE)
        out += change + (b"index 1234567..89abcde" + (b"" if change else b" " + mode.encode()))
        return out + b"\n--- " + a + b"\n+++ " + b + b"\n" + draw(hunks("modify"))
    if kind in ("add", "empty-add", "link"):
        out += b"new file mode " + (b"120000" if kind == "link" else mode.encode()) + b"\n"
        out += b"index 0000000..89abcde\n"
        if kind == "empty-add":
            return out
        if kind == "link":
            target = draw(NAME).replace("\n", "").encode()
            out += b"--- /dev/null\n+++ " + b + b"\n@@ -0,0 +1 @@\n+" + target
            return out + b"\n\\ No newline at end of file\n"
        return out + b"--- /dev/null\n+++ " + b + b"\n" + draw(hunks("add"))
    if kind == "delete":
        out += f"deleted file mode {mode}\nindex 1234567..0000000\n".encode()
        return out + b"--- " + a + b"\n+++ /dev/null\n" + draw(hunks("delete"))
    if kind == "link-delete":
        out += b"deleted file mode 120000\nindex 1234567..0000000\n"
        return out + b"--- " + a + b"\n+++ /dev/null\n@@ -1 +0,0 @@\n-t\n\\ No newline\n"
    if kind == "mode":
        return out + draw(MODE_CHANGE.filter(bool))
    if kind == "binary":
        out += b"index " + b"1" * 40 + b".." + b"2" * 40 + b" 100644\n"
        block = binary_block(draw(st.binary(min_size=0, max_size=80)))
        if draw(st.booleans()):
            block = block.replace(b"\nliteral ", b"\ndelta ", 1)  # git reads, not applies
        return out + block
    if kind == "binary-differ":
        out += b"index 1234567..89abcde 100644\n"
        return out + b"Binary files " + a + b" and " + b + b" differ\n"
    if kind == "rewrite":
        out += draw(MODE_CHANGE)
        out += b"dissimilarity index %d%%\nindex 1234567..89abcde\n" % draw(st.integers(0, 100))
        return out + b"--- " + a + b"\n+++ " + b + b"\n" + draw(hunks("modify"))
    verb = b"rename" if kind == "rename" else b"copy"
    out += draw(MODE_CHANGE)
    out += b"similarity index %d%%\n" % draw(st.integers(0, 100))
    out += verb + b" from " + name_bytes("", name, q) + b"\n"
    out += verb + b" to " + name_bytes("", other, q) + b"\n"
    if draw(st.booleans()):
        out += b"index 1234567..89abcde\n--- " + a + b"\n+++ " + b + b"\n" + draw(hunks("modify"))
    return out


TIMESTAMPS = st.sampled_from(
    [
        b"",
        b"\t2024-01-02 03:04:05.123456789 +0100",
        b"\t2024-01-02 03:04:05",
        b" 2024-01-02 03:04:05.000000000 +0000",
        b"  2024-01-02 03:04:05 -0500",
        b"\t1970-01-01 00:00:00.000000000 +0000",
        b"\t1969-12-31 19:00:00 -0500",
    ]
)


@st.composite
def plain_section(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["modify", "add", "delete", "add0"]))
    name = draw(NAME)
    q = draw(st.booleans())
    a, b = name_bytes("a/", name, q), name_bytes("b/", name, q)
    ts_a = draw(TIMESTAMPS)
    ts_b = draw(st.one_of(st.just(ts_a), TIMESTAMPS))
    if kind in ("add", "add0") and draw(st.booleans()):
        a, ts_a = b"/dev/null", draw(TIMESTAMPS)
    if kind == "delete" and draw(st.booleans()):
        b, ts_b = b"/dev/null", draw(TIMESTAMPS)
    out = b"diff -u " + a + b" " + b + b"\n" if draw(st.booleans()) else b""
    out += b"--- " + a + ts_a + b"\n+++ " + b + ts_b + b"\n"
    if kind == "add0":  # -U0: a single pure addition somewhere in the file
        return out + b"@@ -3,0 +4,1 @@\n+x\n"
    return out + draw(hunks("modify" if kind == "modify" else kind))


MAIL_HEAD = (
    b"From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\n"
    b"From: A U Thor <a@example.invalid>\nSubject: [PATCH] change\n\nbody\n---\n"
    b" x | 2 +-\n 1 file changed\n\n"
)


@st.composite
def patches(draw: st.DrawFn) -> bytes:
    sections = draw(st.lists(st.one_of(git_section(), plain_section()), min_size=1, max_size=4))
    data = b"".join(sections)
    if draw(st.booleans()):
        data = MAIL_HEAD + data + b"-- \n2.39.5\n\n"
    if draw(st.booleans()):
        data = data.replace(b"\n", b"\r\n")
    return data


@given(patches())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_generated_patches_agree_exactly_when_the_paths_do(data: bytes) -> None:
    """Either we refuse, or git refuses, or our view equals git's exactly when we both name
    the same paths: never equal views over different paths, never a false alarm."""
    try:
        patch = parse(data)
    except PatchParseError:
        return
    gits = gitops.apply_view(data)
    if gits.error is not None:
        return
    diffs = compare_views(git_view(patch), gits)
    assert (diffs == []) == (patch.touched() == gits.paths()), (diffs, patch.touched())


# -- what FileChange now carries ----------------------------------------------------------------
def test_symlink_gitlink_and_binary_fields(corpus: Path) -> None:
    patch = parse(gitb(corpus, "diff", "--cached", *DIFF))
    link_new = next(f for f in patch.files if f.new_path == "link-new")
    assert link_new.symlink_target == "src/app.py" and link_new.new_mode == "120000"
    link_old = next(f for f in patch.files if f.new_path == "link-old")
    assert (link_old.status, link_old.symlink_target) == ("modified", "docs")
    readme = [f for f in patch.files if "README.md" in f.paths]
    assert [(f.status, f.symlink_target) for f in readme] == [
        ("deleted", None),
        ("added", "gone.txt"),
    ]
    sub = next(f for f in patch.files if f.new_path == "vendor/sub")
    assert sub.gitlink and sub.new_mode == "160000" and sub.symlink_target is None
    assert not any(f.gitlink for f in patch.files if f is not sub)
    new_bin = next(f for f in patch.files if f.new_path == "new.bin")
    assert (new_bin.binary_kind, new_bin.binary_size) == ("literal", 502)
    assert (
        new_bin.binary_data
        and zlib.decompress(new_bin.binary_data) == (corpus / "new.bin").read_bytes()
    )
    assert (
        new_bin.old_oid == "0" * 40
        and new_bin.new_oid == gitb(corpus, "hash-object", "new.bin").decode().strip()
    )
    app = next(f for f in patch.files if f.new_path == "src/app.py")
    assert (app.added_lines, app.deleted_lines, app.binary_kind) == (1, 1, None)


def test_symlink_target_keeps_a_newline_git_would_keep() -> None:
    head = b"diff --git a/l b/l\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n"
    data = head + b"+++ b/l\n@@ -0,0 +1 @@\n+../../etc/passwd\n"
    assert parse(data).files[0].symlink_target == "../../etc/passwd\n"
    assert_agree(data)


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (
            b"diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n"
            b"@@ -0,0 +1,2 @@\n+a\n+b\n",
            "one '+' line",
        ),
        (
            b"diff --git a/l b/l\nindex 1111111..2222222 120000\n--- a/l\n+++ b/l\n"
            b"@@ -1,2 +1,2 @@\n x\n-a\n+b\n",
            "one '+' line",
        ),
        (
            b"diff --git a/l b/l\nnew file mode 120000\nindex 0000000..1111111\n"
            b"GIT binary patch\nliteral 0\nHcmV?d00001\n\n",
            "binary data",
        ),
        (b"diff --git a/x b/x\nold mode 100664\nnew mode 100644\n", "unsupported file mode"),
        # git skips a header line with nothing after it, and ignores an unterminated last line
        (b"diff --git a/x b/x\ndiff --git a/y b/y\nindex 1111111..2222222\n", "no header or"),
        (b"diff --git a/x b/x\nold mode 100644\nnew mode 100755", "no final newline"),
        (b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b", "no final newline"),
        (b"diff --git a/x b/x\nold mode 100644\nnew mode 120000\n", "changes the type"),
        (b"diff --git a/x b/x\nold mode 160000\nnew mode 100755\n", "changes the type"),
        (b"diff --git a/x b/x\nindex 1111111..2222222 040000\n", "unsupported file mode"),
        (
            b"diff --git a/x b/x\nindex 1111111..2222222\nindex 1111111..3333333\n",
            "duplicate",
        ),
        (
            b"diff --git a/x b/x\nold mode 100644\nnew mode 100755\n"
            b"index 1111111..2222222 100644\n",
            "a mode on the index line",
        ),
        (
            b"diff --git a/x b/x\ndeleted file mode 100644\nold mode 100755\n",
            "'old mode' and 'deleted file mode'",
        ),
        (
            b"diff --git a/x b/y\nsimilarity index 90%\ndissimilarity index 10%\n"
            b"rename from x\nrename to y\n",
            "'similarity index' and 'dissimilarity index'",
        ),
        (
            b"diff --git a/x b/x\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+a\n",
            "without a 'new file mode'",
        ),
        (
            b"diff --git a/x b/x\n--- a/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n",
            "without a 'deleted file mode'",
        ),
        (
            b"diff --git a/x b/x\nnew file mode 100644\n--- /dev/null\n+++ b/x\n"
            b"@@ -1 +1 @@\n-a\n+b\n",
            "old lines",
        ),
        (b"--- a/x\t1970-01-01 00:00:00 +0000\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", "old lines"),
        (
            b"diff --git a/x b/x\nindex 1111111..2222222\nGIT binary patch\r\nliteral 0\r\n"
            b"HcmV?d00001\r\n\r\n",
            "bare newline",
        ),
        (
            b"diff --git a/x b/x\nindex 1111111..2222222\nGIT binary patch\nliteral 0\n"
            b"HcmV?d00001\n",
            "not closed",
        ),
        (
            b"diff --git a/x b/x\nindex 1111111..2222222\nGIT binary patch\nliteral 4\nD~~~~~\n\n",
            "overflow",
        ),
    ],
)
def test_refused_sections(data: bytes, what: str) -> None:
    """Forms git never writes, or reads differently from a straight reading: refused."""
    with pytest.raises(PatchParseError, match=re.escape(what)):
        parse(data)


@pytest.mark.parametrize(
    ("stamp", "status"),
    [
        (b"\t1970-01-01 00:00:00.000000000 +0000", "added"),
        (b"\t1969-12-31 19:00:00 -0500", "added"),
        (b"\t1970-01-01 05:30:00 +05:30", "added"),
        (b"\t1970-01-01 00:00:00.5 +0000", "modified"),
        (b"\t1970-01-01 00:00:01 +0000", "modified"),
        (b"\t1970-01-01 01:00:00 +0000", "modified"),
    ],
)
def test_epoch_timestamps_create_as_git_reads_them(stamp: bytes, status: str) -> None:
    data = b"--- a/x" + stamp + b"\n+++ b/x\t2024-01-01 00:00:00 +0000\n@@ -0,0 +1 @@\n+a\n"
    patch, gits = readings(data)
    assert patch.files[0].status == status
    assert (compare_views(git_view(patch), gits) == []) == (patch.touched() == gits.paths())


def test_unified_zero_single_addition_summary() -> None:
    """git prints 'create' for a plain one-hunk pure addition: we render it the same way."""
    data = b"--- a/x\n+++ b/x\n@@ -3,0 +4 @@\n+a\n"
    assert parse(data).files[0].status == "modified"
    assert assert_agree(data) and gitops.apply_view(data).summary == (" create x",)
    two = data + b"@@ -9,0 +11 @@\n+b\n"
    assert assert_agree(two) and gitops.apply_view(two).summary == ()


def test_apply_view_bounds_what_git_would_inflate() -> None:
    """git allocates each binary hunk's declared size while reading: a huge declaration is
    refused before git runs, and a slow git is reported, not waited for forever."""
    bomb = (
        b"diff --git a/x b/x\nindex 1111111..2222222\nGIT binary patch\n"
        b"literal 1099511627776\nHcmV?d00001\n\n"
    )
    view = gitops.apply_view(bomb)
    assert view.error is not None and "1099511627776" in view.error
    small = bomb.replace(b"1099511627776", b"0")
    assert gitops.apply_view(small, max_binary=0).sections == (GitSection("x", "x", None, None),)
    slow = gitops.apply_view(small, timeout=1e-6)
    assert slow.error is not None and "longer than" in slow.error


@pytest.mark.skipif(os.name == "nt", reason="lists child processes with ps")
def test_a_caller_failing_while_git_reads_leaves_no_git_and_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git reads the patch while the caller parses it: whatever the caller raises, both gits
    are reaped and their folder removed before the error goes on."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    patch = b"diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n" * 2000
    threads = threading.active_count()
    with pytest.raises(RuntimeError, match="parser bug"), gitops.apply_view_started(patch):
        raise RuntimeError("parser bug")
    assert threading.active_count() == threads  # the readers are done, not left behind
    ps = subprocess.run(
        ["ps", "-o", "comm=", "--ppid", str(os.getpid())], capture_output=True, text=True
    )
    assert "git" not in ps.stdout.split()
    assert list(tmp_path.iterdir()) == []
    with gitops.apply_view_started(patch, timeout=1e-6) as view:
        assert view().error == "git apply took longer than 1e-06s"
    assert list(tmp_path.iterdir()) == []
