"""Check a ``GIT binary patch`` against its own ``index`` line, without trusting either.

``git apply`` does not always use a binary section's data: when the postimage id named on the
``index`` line already exists in the object store, git takes that object instead ("We already
have the postimage"), so a forged id makes git write any blob it can reach (a secret file's
bytes) while the patch text looks harmless. The defence is to compute what the data itself
produces and insist it is the declared id: then whichever source git uses, the bytes are the
same.

Everything here is pure and bounded: base85 per git's alphabet and line-length letters, zlib
inflated with a hard cap (a zip bomb is refused without allocating its output), git's delta
format (``patch-delta.c``) and blob ids for ``sha1`` and ``sha256`` repositories. Reading the
base blob of a delta is the caller's job (``gitops.cat_blob``).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # pragma: no cover - typing only; patchparse imports this module
    from tools.codex.factory.core.patchparse import FileChange

# What one section may inflate to; a declared size above this is refused outright.
DEFAULT_LIMIT = 256 * 1024 * 1024

HEX_LENGTH = {"sha1": 40, "sha256": 64}
_DELTA_MIN = 4  # git's DELTA_SIZE_MIN


class BinaryPatchError(ValueError):
    """Binary patch data that git would refuse (or that we refuse to expand)."""


class Postimage(NamedTuple):
    """Whether a binary section's declared postimage id is what its own data produces."""

    ok: bool
    oid: str | None
    reason: str


def line_length(letter: int) -> int:
    """Bytes a base85 line carries: 'A'..'Z' -> 1..26, 'a'..'z' -> 27..52; 0 if not a letter."""
    if 0x41 <= letter <= 0x5A:
        return letter - 0x41 + 1
    if 0x61 <= letter <= 0x7A:
        return letter - 0x61 + 27
    return 0


def decode_line(line: bytes) -> bytes:
    """One data line (length letter, then groups of five base85 characters), as git's decode_85.

    git's alphabet is RFC 1924's, so :func:`base64.b85decode` does the arithmetic, including
    git's overflow check (a group above 2**32 - 1 is an error).
    """
    n = line_length(line[0]) if line else 0
    body = line[1:]
    if n == 0 or len(body) != (n + 3) // 4 * 5:
        raise BinaryPatchError(f"bad binary line length in {bytes(line[:20])!r}")
    try:
        return base64.b85decode(body)[:n]
    except ValueError as exc:
        raise BinaryPatchError(f"invalid base85 data: {exc}") from None


def encode_lines(data: bytes) -> list[bytes]:
    """``data`` as git writes it in a binary hunk: lines of up to 52 bytes, letter first."""
    letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return [
        letters[len(chunk) - 1 : len(chunk)] + base64.b85encode(chunk, pad=True)
        for chunk in (data[k : k + 52] for k in range(0, len(data), 52))
    ]


def decode_lines(lines: Iterable[bytes]) -> bytes:
    """A whole block's data lines (without line ends), concatenated."""
    return b"".join(decode_line(line) for line in lines)


def inflate(data: bytes, size: int, limit: int = DEFAULT_LIMIT) -> bytes:
    """Inflate ``data`` to exactly ``size`` bytes, never producing more than ``size + 1``.

    Git allocates the declared size and fails unless the stream ends exactly there; trailing
    bytes after the end of the stream are ignored, as git ignores them.
    """
    if size < 0 or size > limit:
        raise BinaryPatchError(f"declared size {size} is over the limit of {limit} bytes")
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, size + 1)
    except zlib.error as exc:
        raise BinaryPatchError(f"corrupt deflate data: {exc}") from None
    if len(out) > size:
        raise BinaryPatchError(f"data inflates to more than the declared {size} bytes")
    if not d.eof or len(out) != size:
        raise BinaryPatchError(f"data inflates to {len(out)} bytes, not the declared {size}")
    return out


def _varint(delta: bytes, pos: int) -> tuple[int, int]:
    """A delta header size (7 bits a byte, least significant first) and the next position."""
    value = shift = 0
    while True:
        if pos >= len(delta):
            raise BinaryPatchError("truncated delta header")
        c = delta[pos]
        pos += 1
        value |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return value, pos
        if shift > 63:
            raise BinaryPatchError("delta header size overflows")


def apply_delta(base: bytes, delta: bytes, limit: int = DEFAULT_LIMIT) -> bytes:
    """Replay a git delta (copy/insert opcodes) on ``base``, with git's bounds checks."""
    if len(delta) < _DELTA_MIN:
        raise BinaryPatchError("delta is too short")
    src_size, pos = _varint(delta, 0)
    if src_size != len(base):
        raise BinaryPatchError(f"delta expects a {src_size}-byte base, not {len(base)} bytes")
    size, pos = _varint(delta, pos)
    if size > limit:
        raise BinaryPatchError(f"delta result of {size} bytes is over the limit of {limit}")
    out = bytearray()
    n = len(delta)
    while pos < n:
        cmd = delta[pos]
        pos += 1
        if cmd & 0x80:
            offset = length = 0
            for bit, shift, is_offset in (
                (0x01, 0, True),
                (0x02, 8, True),
                (0x04, 16, True),
                (0x08, 24, True),
                (0x10, 0, False),
                (0x20, 8, False),
                (0x40, 16, False),
            ):
                if cmd & bit:
                    if pos >= n:
                        raise BinaryPatchError("truncated delta copy opcode")
                    if is_offset:
                        offset |= delta[pos] << shift
                    else:
                        length |= delta[pos] << shift
                    pos += 1
            if length == 0:
                length = 0x10000
            if offset + length > len(base) or length > size - len(out):
                raise BinaryPatchError("delta copy is out of bounds")
            out += base[offset : offset + length]
        elif cmd:
            if cmd > size - len(out) or cmd > n - pos:
                raise BinaryPatchError("delta insert is out of bounds")
            out += delta[pos : pos + cmd]
            pos += cmd
        else:
            raise BinaryPatchError("unexpected delta opcode 0")
    if len(out) != size:
        raise BinaryPatchError(f"delta produced {len(out)} bytes, not the declared {size}")
    return bytes(out)


def blob_oid(data: bytes, object_format: str = "sha1") -> str:
    """The object id git gives ``data`` as a blob in a repository of ``object_format``."""
    if object_format not in HEX_LENGTH:
        raise ValueError(f"unknown object format {object_format!r}")
    h = hashlib.new(object_format)
    h.update(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def postimage(
    section: FileChange,
    base: bytes | None,
    object_format: str = "sha1",
    limit: int = DEFAULT_LIMIT,
) -> Postimage:
    """Does ``section``'s data produce the postimage its ``index`` line declares?

    ``base`` is the blob named by the section's ``old_oid`` (needed for a delta; None when it
    could not be read). ``ok`` False means git might write bytes the patch does not contain.
    """
    hexlen = HEX_LENGTH.get(object_format)
    if hexlen is None:
        raise ValueError(f"unknown object format {object_format!r}")
    if not section.binary:
        return Postimage(False, None, "not a binary section")
    new, old = section.new_oid, section.old_oid
    if new is None or old is None or len(new) != hexlen or len(old) != hexlen:
        return Postimage(False, None, "binary section without a full index line")
    if new == "0" * hexlen:
        return Postimage(True, None, "deletion: nothing is written")
    if section.binary_kind is None or section.binary_data is None or section.binary_size is None:
        return Postimage(
            False,
            None,
            "binary section carries no data: git would take the postimage "
            f"{new} from the object store",
        )
    if old == "0" * hexlen:
        base = b""  # a creation: git applies the data to an empty preimage
    try:
        data = inflate(section.binary_data, section.binary_size, limit)
        if section.binary_kind == "delta":
            if base is None:
                return Postimage(
                    False, None, f"delta against {old}: the base blob is not available to verify"
                )
            if blob_oid(base, object_format) != old:
                return Postimage(False, None, f"the base given is not blob {old}")
            data = apply_delta(base, data, limit)
    except BinaryPatchError as exc:
        return Postimage(False, None, str(exc))
    computed = blob_oid(data, object_format)
    if computed != new:
        return Postimage(
            False, computed, f"the data produces {computed}, but the index line declares {new}"
        )
    return Postimage(True, computed, "the data produces the declared postimage")
