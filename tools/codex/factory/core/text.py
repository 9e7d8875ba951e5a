"""Bounded text: every string a worker supplies is clipped, with its hash, before it reaches
output, the ledger or a report (a 20 MB status string stays one short line)."""

from __future__ import annotations

import hashlib

# Every character str.splitlines() breaks at, escaped: one message, one line.
_ONE_LINE = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def clip(text: str, limit: int) -> str:
    """``text`` when it has at most ``limit`` characters, else its start and what was cut."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[: max(limit - 60, 0)]}… [{len(text)} characters, sha256 {digest}…]"


def one_line(text: str) -> str:
    """``text`` with every line break escaped."""
    return text.translate(_ONE_LINE)


def is_utf8(name: str) -> bool:
    """Is ``name`` valid Unicode text (no lone surrogates)? A file name whose bytes are not
    UTF-8 comes from the OS with each bad byte as a surrogate (``os.fsdecode``)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def escaped_name(name: str) -> str:
    """``name`` with each byte that is not UTF-8 shown as ``\\xNN`` (a lone surrogate from
    elsewhere as ``\\uNNNN``): printable, encodable, and never mistaken for the raw name."""
    if is_utf8(name):
        return name
    out = []
    for ch in name:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


UTF8_BOM = b"\xef\xbb\xbf"


def strip_bom(data: bytes) -> bytes:
    """``data`` without a leading UTF-8 byte-order mark (Windows editors write one)."""
    return data[3:] if data.startswith(UTF8_BOM) else data


def utf16_kind(data: bytes) -> str | None:
    """'UTF-16 LE' / 'UTF-16 BE' when ``data`` looks UTF-16 (a BOM, or NULs between ASCII):
    what PowerShell 5.1's ``>`` and ``Out-File`` write."""
    if data.startswith(b"\xff\xfe") or (len(data) >= 2 and data[0] != 0 and data[1] == 0):
        return "UTF-16 LE"
    if data.startswith(b"\xfe\xff") or (len(data) >= 2 and data[0] == 0 and data[1] != 0):
        return "UTF-16 BE"
    return None
