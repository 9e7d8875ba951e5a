"""Ledger surgery for tests: read every line, or write lines back re-chained (what a forger
covering their tracks would do)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.scratch import RUNS_REL
from tools.codex.factory.infra import jsonio
from tools.codex.factory.ledger.store import GENESIS, HEAD_RECORD, encode

LEDGER = f"{RUNS_REL}/factory_ledger.jsonl"
HEAD = f"{RUNS_REL}/factory_ledger.sha256"


def ledger_lines(repo: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (repo / LEDGER).read_bytes().splitlines()]


def rewrite_ledger(
    repo: Path, events: list[dict[str, Any]], rechain: bool = True, head: bool = True
) -> None:
    """Write ``events`` back; with ``rechain``, renumber and re-hash every line; with ``head``,
    rewrite the head file to match: a forger covering their tracks."""
    out = []
    prev = GENESIS
    for n, ev in enumerate(events, 1):
        body = {k: v for k, v in ev.items() if k != "hash"}
        if rechain:
            body["seq"] = n
            body["prev_hash"] = prev
            line, prev = encode(body)
        else:
            line = jsonio.canonical(ev) + b"\n"
            prev = ev["hash"]
        out.append(line)
    (repo / LEDGER).write_bytes(b"".join(out))
    if head:
        record = jsonio.canonical({"hash": prev, "seq": len(events)})
        (repo / HEAD).write_bytes(record.ljust(HEAD_RECORD - 1) + b"\n")
