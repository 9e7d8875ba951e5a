"""Appends/s through the ledger vs a raw os.write + os.fsync loop of the same bytes.

Rounds alternate between the two so disk noise hits both alike; the ratio of medians is
reported. Target: >= 0.8x.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1000, help="appends per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        ours: list[float] = []
        raw: list[float] = []
        for r in range(args.rounds):
            ledger_path = root / f"factory_ledger_{r}.jsonl"
            with Ledger(ledger_path, Clock(), fsync=True) as ledger:
                t = time.perf_counter()
                for i in range(args.events):
                    ledger.append("bench.append", "bench_run", "bench", {"actor": "bench", "i": i})
                ours.append(args.events / (time.perf_counter() - t))
            lines = ledger_path.read_bytes().splitlines(keepends=True)
            raw_path = root / f"raw_{r}.jsonl"
            fd = os.open(
                raw_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o644
            )
            t = time.perf_counter()
            for line in lines:
                os.write(fd, line)
                os.fsync(fd)
            raw.append(len(lines) / (time.perf_counter() - t))
            os.close(fd)
    o, b = _common.median(ours), _common.median(raw)
    print(_common.env_line())
    print(f"ledger append: {o:,.0f} appends/s (median of {args.rounds} x {args.events})")
    print(f"raw write+fsync: {b:,.0f} appends/s (same bytes)")
    print(_common.verdict("ratio ledger/raw", o / b, 0.8, higher_is_better=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
