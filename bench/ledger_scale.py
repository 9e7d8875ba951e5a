"""Every command against a ledger of 1,000 events and one of 1,000,000: is the cost flat?

Both ledgers end with the same real run (a ``oneshot --dry-run`` made by the CLI) after other
runs shaped like it (the events of a real dry run, copied under new run IDs with the real
encoder, so the chain, head file and timestamps are as appends leave them). Each command runs
as a whole process, as an operator runs it, ``--rounds`` times, alternating between the two
ledgers so machine noise hits both alike; the table shows medians, the ratio, and the peak
memory of the process at 1M (``os.wait4``: exactly that process).

Targets: every command at 1M <= 1.2x its time at 1k; peak memory <= 64 MiB at 1M; an index
rebuild (``ledger reindex``) <= 2x ``ledger verify`` of the same file. (``ledger verify``
against a raw sha256 loop is bench/ledger_verify.py.)

``--root DIR`` measures another checkout's CLI (e.g. the code before the run index) on the same
ledgers, built by this checkout's encoder (the line format is the same); a CLI without
``ledger reindex`` skips that line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

PY = sys.executable
RUNS = "tools/codex/runs"
COMMANDS: list[tuple[str, list[str]]] = [
    ("oneshot --dry-run", ["oneshot", "--dry-run", "--base-ref", "HEAD"]),
    ("ledger-replay --run-id X", ["ledger-replay", "--run-id", "{run}"]),
    ("ledger --run-id X --limit 50", ["ledger", "--run-id", "{run}", "--limit", "50"]),
    ("watch --run-id X (finished)", ["watch", "--run-id", "{run}", "--timeout", "60"]),
    ("doctor", ["doctor"]),
    ("clean --run-id X", ["clean", "--run-id", "{run}"]),
    ("preflight", ["preflight"]),
    ("runs --limit 20", ["runs", "--limit", "20"]),
    ("ledger-replay --run-id latest", ["ledger-replay", "--run-id", "latest"]),
]


CODE = _common.ROOT  # the checkout whose CLI is measured (--root)


def cli(repo: Path, *args: str) -> list[str]:
    return [PY, "-m", "tools.codex.factory", "--repo", str(repo), *args]


def env() -> dict[str, str]:
    out = _common.git_env()
    out["PYTHONPATH"] = str(CODE)
    return {k: v for k, v in out.items() if not k.startswith("FACTORY_")}


def has_reindex(repo: Path) -> bool:
    """Does the measured CLI know `ledger reindex`? (the code before the index does not)"""
    res = subprocess.run(cli(repo, "ledger", "reindex", "--help"), env=env(), capture_output=True)
    return res.returncode == 0


def real_run(repo: Path) -> str:
    res = subprocess.run(
        cli(repo, "oneshot", "--dry-run", "--base-ref", "HEAD", "--json"),
        env=env(),
        capture_output=True,
        check=True,
    )
    return str(json.loads(res.stdout)["run_id"])


def template(root: Path) -> list[dict[str, object]]:
    """The events of one real dry run, as the CLI writes them."""
    repo = _common.make_repo(root / "template")
    run_id = real_run(repo)
    lines = (repo / RUNS / "factory_ledger.jsonl").read_bytes().splitlines()
    events = [json.loads(line) for line in lines]
    return [e for e in events if e["run_id"] == run_id]


def fill(ledger: Path, events: list[dict[str, object]], n: int) -> None:
    """``n`` events of runs shaped like ``events``, each under its own run ID, ending a
    minute ago (real appends come after them)."""
    from tools.codex.factory.core.paths import head_path
    from tools.codex.factory.infra import jsonio
    from tools.codex.factory.infra.clock import format_ts
    from tools.codex.factory.ledger.store import GENESIS, HEAD_RECORD, encode

    step = dt.timedelta(microseconds=1000)
    t0 = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1) - n * step
    prev = GENESIS
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with open(ledger, "wb", buffering=1 << 20) as fh:
        for seq in range(1, n + 1):
            run, i = divmod(seq - 1, len(events))
            src = events[i]
            body = {
                "event_type": src["event_type"],
                "payload": src["payload"],
                "prev_hash": prev,
                "run_id": f"bench_{run:08d}",
                "seq": seq,
                "stage": src["stage"],
                "ts_utc": format_ts(t0 + seq * step),
            }
            line, prev = encode(body)
            fh.write(line)
    record = jsonio.canonical({"hash": prev, "seq": n})
    head_path(ledger).write_bytes(record.ljust(HEAD_RECORD - 1) + b"\n")


def build(root: Path, n: int, events: list[dict[str, object]]) -> tuple[Path, str]:
    repo = _common.make_repo(root / f"repo-{n}")
    fill(repo / RUNS / "factory_ledger.jsonl", events, n - len(events))
    return repo, real_run(repo)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the big ledger")
    ap.add_argument("--small", type=int, default=1_000, help="events in the small ledger")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to build (default: a temp dir)")
    ap.add_argument("--skip-reindex", action="store_true", help="do not time `ledger reindex`")
    ap.add_argument(
        "--root", default=None, help="the checkout whose CLI to measure (default: this)"
    )
    args = ap.parse_args()
    global CODE
    CODE = Path(args.root).resolve() if args.root else _common.ROOT
    print(_common.env_line())
    print(f"measuring the CLI of {CODE}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        events = template(root)
        t = time.perf_counter()
        small, small_run = build(root, args.small, events)
        big, big_run = build(root, args.events, events)
        print(f"built {args.small:,} and {args.events:,} events in {time.perf_counter() - t:.1f}s")
        times: dict[str, dict[int, list[float]]] = {}
        peak: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, argv in COMMANDS:
                for n, repo, run in ((args.small, small, small_run), (args.events, big, big_run)):
                    full = [a.replace("{run}", run) for a in argv]
                    wall, rss, _out = _common.run_child(cli(repo, *full), env())
                    times.setdefault(name, {}).setdefault(n, []).append(wall)
                    if n == args.events:
                        peak[name] = max(peak.get(name, 0.0), rss)
        print(f"{'command':32} {args.small:>10,} {args.events:>12,} {'ratio':>7} {'peak MiB':>9}")
        worst = 0.0
        for name, _argv in COMMANDS:
            a = _common.median(times[name][args.small])
            b = _common.median(times[name][args.events])
            worst = max(worst, b / a)
            print(f"{name:32} {a * 1000:8.0f}ms {b * 1000:10.0f}ms {b / a:6.2f}x {peak[name]:9.1f}")
        print(_common.verdict("worst ratio 1M/1k", worst, 1.2, higher_is_better=False))
        print(_common.verdict("peak MiB at 1M", max(peak.values()), 64, higher_is_better=False))
        if args.skip_reindex or not has_reindex(big):
            print("ledger reindex: not timed (skipped, or this CLI has no such command)")
        else:
            verify = _common.median(
                [_common.run_child(cli(big, "ledger", "verify"), env())[0] for _ in range(3)]
            )
            rebuild = _common.median(
                [_common.run_child(cli(big, "ledger", "reindex"), env())[0] for _ in range(3)]
            )
            print(f"ledger verify {verify:.2f}s, ledger reindex {rebuild:.2f}s (whole processes)")
            print(
                _common.verdict("reindex / verify", rebuild / verify, 2.0, higher_is_better=False)
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
