"""``Ledger.verify()`` lines/s on a 1,000,000-event ledger vs a raw sha256 loop over the same lines.

The ledger is built in-process with the real encoder (no lock, no fsync: only its bytes
matter here). Both sides run in child processes, alternating, after one warm-up read so
the page cache serves both alike; each child times only its own loop, and the verify
child's peak RSS is read with ``os.wait4`` (exactly that process).
Targets: ratio >= 0.5, >= 500,000 lines/s, peak memory <= 64 MiB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import _common

VERIFY = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.ledger.store import Ledger
t = time.perf_counter()
res = Ledger(Path(sys.argv[1]), Clock()).verify()
e = time.perf_counter() - t
if not res.ok:
    raise SystemExit(f"verify failed: {res.reason}")
print(res.lines, e)
"""

RAW = r"""
import hashlib, sys, time
t = time.perf_counter()
n = 0
with open(sys.argv[1], "rb") as fh:
    for line in fh:
        hashlib.sha256(line).hexdigest()
        n += 1
print(n, time.perf_counter() - t)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to build the ledger (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "factory_ledger.jsonl"
        t = time.perf_counter()
        _common.build_ledger(path, args.events)
        size = path.stat().st_size
        print(_common.env_line())
        print(
            f"built {args.events:,} events ({size / 2**20:,.0f} MiB) in {time.perf_counter() - t:.1f}s"
        )
        with open(path, "rb") as fh:  # warm the page cache for both sides
            while fh.read(1 << 24):
                pass
        ours: list[float] = []
        raw: list[float] = []
        peaks: list[float] = []
        for _ in range(args.rounds):
            _, rss, out = _common.run_child(
                [sys.executable, "-c", VERIFY, str(path), str(_common.ROOT)]
            )
            lines, secs = out.split()
            assert int(lines) == args.events, out
            ours.append(args.events / float(secs))
            peaks.append(rss)
            _, _, out = _common.run_child([sys.executable, "-c", RAW, str(path)])
            lines, secs = out.split()
            assert int(lines) == args.events, out
            raw.append(args.events / float(secs))
    o, b = _common.median(ours), _common.median(raw)
    print(
        f"ledger verify: {o:,.0f} lines/s (median of {args.rounds}; runs {', '.join(f'{x:,.0f}' for x in ours)})"
    )
    print(
        f"raw sha256 loop: {b:,.0f} lines/s (same lines; runs {', '.join(f'{x:,.0f}' for x in raw)})"
    )
    print(_common.verdict("ratio verify/raw", o / b, 0.5, higher_is_better=True))
    print(_common.verdict("verify lines/s", o, 500_000, higher_is_better=True))
    print(
        _common.verdict(
            "verify peak memory MiB (whole process)", max(peaks), 64, higher_is_better=False
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
