"""Binary patches: the data must produce the postimage the index line declares.

git apply takes a binary section's postimage from the object store when the index line names
an object it already has, so a forged id smuggles any reachable blob into the result. These
tests use real git output and real repositories, sha1 and sha256.
"""

from __future__ import annotations

import os
import subprocess
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.repos import git, make_repo
from tools.codex.factory.core import gitbinary
from tools.codex.factory.core.gitbinary import BinaryPatchError, Postimage, postimage
from tools.codex.factory.core.gitview import compare_views
from tools.codex.factory.core.patchparse import FileChange, git_view, parse
from tools.codex.factory.errors import GitError
from tools.codex.factory.infra import gitops

LIMIT = 1 << 20
SECRET = b"\x00API_KEY=hunter2\n" * 20


def gitb(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    res = subprocess.run(
        ["git", "-C", str(repo), *args], input=input, capture_output=True, check=False
    )
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout


def binary_repo(path: Path, *init: str) -> Path:
    """A repository with a big binary file (for a delta), a secret and a file to change."""
    path.mkdir(parents=True)
    git(path, "init", "-q", *init)
    (path / "big.bin").write_bytes(bytes(range(256)) * 64)
    (path / "secret.key").write_bytes(SECRET)
    (path / "img.bin").write_bytes(b"\x00\x01\x02harmless")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    return path


def staged_binary_diff(repo: Path) -> bytes:
    big = bytearray((repo / "big.bin").read_bytes())
    big[1000:1010] = b"0123456789"
    (repo / "big.bin").write_bytes(bytes(big))
    (repo / "new.bin").write_bytes(b"\x00\x01" + os.urandom(700))
    (repo / "img.bin").write_bytes(b"\x00\x01\x02still harmless")
    git(repo, "add", "-A")
    return gitb(repo, "diff", "--cached", "--binary", "--full-index")


def sections(data: bytes) -> dict[str, FileChange]:
    return {f.new_path or f.old_path or "": f for f in parse(data).files}


def check(repo: Path, f: FileChange) -> Postimage:
    base = None if f.old_oid is None else gitops.cat_blob(repo, f.old_oid, LIMIT)
    return postimage(f, base, gitops.object_format(repo))


@pytest.mark.parametrize("init", [(), ("--object-format=sha256",)], ids=["sha1", "sha256"])
def test_real_literal_and_delta_round_trip_to_the_real_blob_ids(
    tmp_path: Path, init: tuple[str, ...]
) -> None:
    repo = binary_repo(tmp_path / "r", *init)
    fmt = "sha256" if init else "sha1"
    assert gitops.object_format(repo) == fmt
    data = staged_binary_diff(repo)
    assert compare_views(git_view(parse(data)), gitops.apply_view(data)) == []
    by = sections(data)
    assert by["big.bin"].binary_kind == "delta" and by["new.bin"].binary_kind == "literal"
    for name in ("big.bin", "new.bin", "img.bin"):
        f = by[name]
        assert f.binary and f.binary_data is not None and f.binary_size is not None
        want = gitb(repo, "hash-object", name).decode().strip()
        assert len(want) == gitbinary.HEX_LENGTH[fmt] and f.new_oid == want
        assert check(repo, f) == Postimage(True, want, "the data produces the declared postimage")
        assert gitbinary.blob_oid((repo / name).read_bytes(), fmt) == want


def test_forged_index_line_naming_another_blob_is_caught(tmp_path: Path) -> None:
    """The attack: the index line names the secret's blob as img.bin's postimage. git applies
    it with the secret's bytes; our check says the data does not produce that id."""
    repo = binary_repo(tmp_path / "r")
    data = staged_binary_diff(repo)
    secret_oid = gitb(repo, "rev-parse", "HEAD:secret.key").decode().strip()
    honest = sections(data)["img.bin"]
    assert honest.new_oid is not None
    forged = data.replace(honest.new_oid.encode(), secret_oid.encode())
    f = sections(forged)["img.bin"]
    assert f.new_oid == secret_oid and f.binary_data == honest.binary_data
    res = check(repo, f)
    assert not res.ok and res.oid == honest.new_oid and secret_oid in res.reason
    # and it is real: git writes the secret's bytes into img.bin
    git(repo, "reset", "-q")
    gitb(repo, "apply", "--cached", "-", input=forged)
    assert gitb(repo, "cat-file", "blob", ":img.bin") == SECRET


def test_forged_delta_postimage_is_caught(tmp_path: Path) -> None:
    repo = binary_repo(tmp_path / "r")
    data = staged_binary_diff(repo)
    secret_oid = gitb(repo, "rev-parse", "HEAD:secret.key").decode().strip()
    honest = sections(data)["big.bin"]
    assert honest.new_oid is not None and honest.binary_kind == "delta"
    f = sections(data.replace(honest.new_oid.encode(), secret_oid.encode()))["big.bin"]
    assert check(repo, f).ok is False
    # a delta whose base cannot be read is not verifiable, and says so
    res = postimage(honest, None, "sha1")
    assert res == Postimage(False, None, res.reason) and "not available" in res.reason
    # the base given must be the blob the index line names
    assert "is not blob" in postimage(honest, b"other", "sha1").reason


def test_binary_files_differ_section_is_refused(tmp_path: Path) -> None:
    """No data at all: git would take the postimage from the object store, whatever it is."""
    repo = binary_repo(tmp_path / "r")
    staged_binary_diff(repo)
    data = gitb(repo, "diff", "--cached", "--full-index", "--", "img.bin")
    f = sections(data)["img.bin"]
    assert f.binary and f.binary_kind is None and f.new_oid is not None
    res = check(repo, f)
    assert not res.ok and "object store" in res.reason


def test_deletion_and_missing_index(tmp_path: Path) -> None:
    repo = binary_repo(tmp_path / "r")
    (repo / "img.bin").unlink()
    git(repo, "add", "-A")
    f = sections(gitb(repo, "diff", "--cached", "--binary", "--full-index"))["img.bin"]
    assert f.status == "deleted" and check(repo, f).ok
    git(repo, "reset", "-q")
    (repo / "img.bin").write_bytes(b"\x00changed")
    git(repo, "add", "-A")
    full = gitb(repo, "diff", "--cached", "--binary")
    new_oid = sections(full)["img.bin"].new_oid
    assert new_oid is not None
    short = sections(full.replace(new_oid.encode(), new_oid[:7].encode()))["img.bin"]
    assert check(repo, short) == Postimage(False, None, "binary section without a full index line")
    text = parse(b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n").files[0]
    assert postimage(text, None, "sha1").reason == "not a binary section"


def literal_section(declared: int, deflated: bytes, new_oid: str) -> FileChange:
    lines = b"".join(x + b"\n" for x in gitbinary.encode_lines(deflated))
    data = (
        b"diff --git a/x.bin b/x.bin\nnew file mode 100644\n"
        + b"index "
        + b"0" * 40
        + b".."
        + new_oid.encode()
        + b"\nGIT binary patch\nliteral %d\n" % declared
        + lines
        + b"\n"
    )
    return parse(data).files[0]


def test_zip_bomb_is_refused_without_allocating_it() -> None:
    """Declared 100 bytes, inflating to 256 MiB: refused, and memory stays small."""
    comp = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    deflated = b"".join(comp.compress(chunk) for _ in range(256)) + comp.flush()
    f = literal_section(100, deflated, "1" * 40)
    assert f.binary_size == 100 and f.binary_data == deflated
    tracemalloc.start()
    try:
        res = postimage(f, None, "sha1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not res.ok and "more than the declared 100" in res.reason
    assert peak < 8 << 20
    # a huge declared size is refused before inflating anything
    with pytest.raises(BinaryPatchError, match="over the limit"):
        gitbinary.inflate(deflated, 1 << 40)


def test_inflate_matches_gits_rules() -> None:
    data = b"hello binary"
    z = zlib.compress(data)
    assert gitbinary.inflate(z, len(data)) == data
    assert gitbinary.inflate(z + b"trailing", len(data)) == data  # git ignores it too
    for size in (len(data) - 1, len(data) + 1):
        with pytest.raises(BinaryPatchError):
            gitbinary.inflate(z, size)
    with pytest.raises(BinaryPatchError, match="corrupt"):
        gitbinary.inflate(b"not zlib", 3)
    with pytest.raises(BinaryPatchError):
        gitbinary.inflate(z[:-4], len(data))  # truncated stream


def test_literal_checks_the_declared_id() -> None:
    data = b"\x00payload"
    oid = gitbinary.blob_oid(data)
    assert postimage(literal_section(len(data), zlib.compress(data), oid), None).ok
    wrong = literal_section(len(data), zlib.compress(data), "f" * 40)
    assert postimage(wrong, None) == Postimage(False, oid, postimage(wrong, None).reason)


def delta(base: bytes, ops: bytes, size: int) -> bytes:
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    return varint(len(base)) + varint(size) + ops


def test_apply_delta_copy_insert_and_bounds() -> None:
    base = b"0123456789abcdef"
    ops = bytes([0x91, 4, 6]) + bytes([3]) + b"XYZ" + bytes([0x90, 2])
    assert gitbinary.apply_delta(base, delta(base, ops, 11)) == b"456789XYZ01"
    bad = [
        (delta(base, bytes([0x91, 12, 6]), 6), "out of bounds"),  # copy past the base
        (delta(base, bytes([5]) + b"ab", 5), "out of bounds"),  # insert past the data
        (delta(base, bytes([1]) + b"a" + bytes([0]), 1), "opcode 0"),
        (delta(base, bytes([2]) + b"ab", 3), "produced 2 bytes"),
        (delta(b"x", bytes([1]) + b"a", 1), "expects a 1-byte base"),
        (b"\x10", "too short"),
        (delta(base, bytes([0x91, 0]), 6), "truncated"),
    ]
    for d, what in bad:
        with pytest.raises(BinaryPatchError, match=what):
            gitbinary.apply_delta(base, d)
    with pytest.raises(BinaryPatchError, match="over the limit"):
        gitbinary.apply_delta(base, delta(base, bytes([1]) + b"a", 1 << 40))


def test_base85_decoding_follows_git() -> None:
    assert zlib.decompress(gitbinary.decode_line(b"HcmV?d00001")) == b""  # git's "literal 0"
    with pytest.raises(BinaryPatchError, match="invalid base85"):
        gitbinary.decode_line(b'A0000"')
    with pytest.raises(BinaryPatchError, match="overflow"):
        gitbinary.decode_line(b"A~~~~~")
    with pytest.raises(BinaryPatchError, match="length"):
        gitbinary.decode_line(b"B000000000")
    with pytest.raises(BinaryPatchError, match="length"):
        gitbinary.decode_line(b"")


@given(st.binary(max_size=200))
def test_base85_round_trip(data: bytes) -> None:
    lines = gitbinary.encode_lines(data)
    assert all(len(x) <= 66 for x in lines)
    assert gitbinary.decode_lines(lines) == data


def test_blob_ids_match_git_hash_object(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    for data in (b"", b"x", os.urandom(100)):
        want = gitb(repo, "hash-object", "--stdin", input=data).decode().strip()
        assert gitbinary.blob_oid(data) == want
    with pytest.raises(ValueError):
        gitbinary.blob_oid(b"", "md5")


def test_cat_blob_is_bounded_and_takes_only_full_ids(tmp_path: Path) -> None:
    repo = binary_repo(tmp_path / "r")
    oid = gitb(repo, "rev-parse", "HEAD:secret.key").decode().strip()
    assert gitops.cat_blob(repo, oid, LIMIT) == SECRET
    assert gitops.cat_blob(repo, oid, len(SECRET) - 1) is None
    assert gitops.cat_blob(repo, oid[:12], LIMIT) is None  # abbreviated
    assert gitops.cat_blob(repo, "HEAD:secret.key", LIMIT) is None  # revision syntax
    assert gitops.cat_blob(repo, "-" + oid[1:], LIMIT) is None
    assert gitops.cat_blob(repo, "e" * 40, LIMIT) is None  # missing
    tree = gitb(repo, "rev-parse", "HEAD^{tree}").decode().strip()
    assert gitops.cat_blob(repo, tree, LIMIT) is None  # not a blob
    # a replace ref does not change what the object store holds
    other = gitb(repo, "rev-parse", "HEAD:img.bin").decode().strip()
    git(repo, "replace", oid, other)
    assert gitops.cat_blob(repo, oid, LIMIT) == SECRET


def test_object_format(tmp_path: Path) -> None:
    assert gitops.object_format(make_repo(tmp_path / "r")) == "sha1"
    (tmp_path / "none").mkdir()
    with pytest.raises(GitError):
        gitops.object_format(tmp_path / "none")
