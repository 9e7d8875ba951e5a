"""Wall time of the whole process ``factory ledger --limit 50`` on a 1,000,000-event ledger vs a
1,000-event one. The tail is read backwards from the end, so its cost should not grow with
the ledger. Target: ratio <= 1.2. ``tail -n 50`` on the big file is printed for reference.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _common


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=1_000)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    env = dict(_common.git_env(), PYTHONPATH=str(_common.ROOT))
    env.pop("FACTORY_NOW", None)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        repos = {}
        for name, n in (("big", args.big), ("small", args.small)):
            repo = _common.make_repo(Path(tmp) / name)
            t = time.perf_counter()
            _common.build_ledger(repo / _common.LEDGER_REL, n)
            print(f"built {name} ledger: {n:,} events in {time.perf_counter() - t:.1f}s")
            repos[name] = repo
        times: dict[str, list[float]] = {"big": [], "small": [], "tail": []}
        tail_bin = shutil.which("tail")
        for _ in range(args.runs):
            for name, repo in repos.items():
                argv = [
                    sys.executable,
                    "-m",
                    "tools.codex.factory",
                    "--repo",
                    str(repo),
                    "ledger",
                    "--limit",
                    str(args.limit),
                ]
                wall, _, out = _common.run_child(argv, env)
                rows = out.decode("utf-8").strip().splitlines()
                if len(rows) != args.limit:
                    raise SystemExit(f"{name}: expected {args.limit} rows, got {len(rows)}")
                times[name].append(wall)
            if tail_bin:
                wall, _, _ = _common.run_child(
                    [tail_bin, "-n", str(args.limit), str(repos["big"] / _common.LEDGER_REL)], env
                )
                times["tail"].append(wall)
    big, small = _common.median(times["big"]), _common.median(times["small"])
    print(_common.env_line())
    print(
        f"ledger --limit {args.limit} on {args.big:,} events: {big * 1000:.1f} ms (median of {args.runs}, whole process)"
    )
    print(
        f"ledger --limit {args.limit} on {args.small:,} events: {small * 1000:.1f} ms (baseline, same run)"
    )
    if times["tail"]:
        print(
            f"raw `tail -n {args.limit}` on {args.big:,} events: {_common.median(times['tail']) * 1000:.1f} ms (reference)"
        )
    print(
        _common.verdict(
            f"ratio {args.big:,}/{args.small:,}", big / small, 1.2, higher_is_better=False
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
