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
