"""Appends/s through the ledger vs a raw os.write + os.fsync loop of the same bytes.

Rounds alternate (ours, raw, raw, ours, ours, raw, ...: each goes first half the time) so disk
and machine noise hits both alike; the figures are medians over rounds and the verdict is the
median of the per-round ratios. Target: >= 0.8x.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import _common

from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.ledger.store import Ledger


def ours(path: Path, events: int) -> tuple[float, list[bytes]]:
    """Appends/s of ``events`` appends (fsync on), and the lines they wrote."""
    with Ledger(path, Clock(), fsync=True) as ledger:
        t = time.perf_counter()
        for i in range(events):
            ledger.append("bench.append", "bench_run", "bench", {"actor": "bench", "i": i})
        rate = events / (time.perf_counter() - t)
    return rate, path.read_bytes().splitlines(keepends=True)


def raw(path: Path, lines: list[bytes]) -> float:
    """Appends/s of a bare write + fsync loop of ``lines``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o644)
    try:
        t = time.perf_counter()
        for line in lines:
            os.write(fd, line)
            os.fsync(fd)
        return len(lines) / (time.perf_counter() - t)
    finally:
        os.close(fd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=500, help="appends per round")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        _, lines = ours(root / "warmup.jsonl", args.events)  # the raw loop's bytes
        mine: list[float] = []
        floor: list[float] = []
        for r in range(args.rounds):
            if r % 2 == 0:
                mine.append(ours(root / f"ledger_{r}.jsonl", args.events)[0])
                floor.append(raw(root / f"raw_{r}.jsonl", lines))
            else:
                floor.append(raw(root / f"raw_{r}.jsonl", lines))
                mine.append(ours(root / f"ledger_{r}.jsonl", args.events)[0])
    o, b = _common.median(mine), _common.median(floor)
    ratio = _common.median([m / f for m, f in zip(mine, floor, strict=True)])
    print(_common.env_line())
    print(f"ledger append: {o:,.0f} appends/s (median of {args.rounds} x {args.events})")
    print(f"raw write+fsync: {b:,.0f} appends/s (same bytes, alternating rounds)")
    print(_common.verdict("ratio ledger/raw (median per round)", ratio, 0.8, higher_is_better=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
