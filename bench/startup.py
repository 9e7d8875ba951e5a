"""Start-up cost: ``python -m tools.codex.factory --help`` vs ``python -c "import click"``.

Median wall time of whole processes, alternating. Target: <= 1.5x (heavy modules such as
jsonschema are imported lazily, inside the commands that need them). With ``--importtime``
the slowest imports of ``--help`` are listed (python -X importtime).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import _common


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--importtime", action="store_true", help="list the slowest imports of --help")
    args = ap.parse_args()
    env = dict(_common.git_env(), PYTHONPATH=str(_common.ROOT))
    ours_argv = [sys.executable, "-m", "tools.codex.factory", "--help"]
    base_argv = [sys.executable, "-c", "import click"]
    for argv in (ours_argv, base_argv):  # warm the file cache and .pyc files
        _common.run_child(argv, env)
    ours: list[float] = []
    base: list[float] = []
    for _ in range(args.runs):
        ours.append(_common.run_child(ours_argv, env)[0])
        base.append(_common.run_child(base_argv, env)[0])
    o, b = _common.median(ours), _common.median(base)
    print(_common.env_line())
    print(f"factory --help: {o * 1000:.1f} ms (median of {args.runs})")
    print(f"python -c 'import click': {b * 1000:.1f} ms (same run)")
    print(_common.verdict("ratio --help/import click", o / b, 1.5, higher_is_better=False))
    if args.importtime:
        res = subprocess.run(
            [sys.executable, "-X", "importtime", *ours_argv[1:]],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        rows = []
        for line in res.stderr.splitlines():
            if not line.startswith("import time:") or "|" not in line:
                continue
            _, cumulative, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
            if cumulative.isdigit():
                rows.append((int(cumulative), name))
        print("slowest imports (cumulative us):")
        for us, name in sorted(rows, reverse=True)[:15]:
            print(f"  {us:>8}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
