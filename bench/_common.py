"""Shared helpers for the benchmark scripts (not a test; prints figures)."""

from __future__ import annotations

import os
import resource
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / (1024 * 1024)


def children_peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / (1024 * 1024)


def verdict(name: str, value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    op = ">=" if higher_is_better else "<="
    return f"{name}: {value:.3f} (target {op} {target}) {'OK' if ok else 'MISSED'}"


def env_line() -> str:
    return f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} cpus"


def load_line() -> str:
    """How busy the machine is (other work inflates absolute figures; ratios less so)."""
    parts = []
    if hasattr(os, "getloadavg"):
        parts.append("load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    try:
        with open("/proc/pressure/cpu") as fh:
            some = fh.readline().split()
        parts.append("cpu pressure " + " ".join(some[1:3]))
    except OSError:
        pass
    return "machine: " + ("; ".join(parts) or "load unknown")


def disk_line(where: Path, files: int = 400) -> str:
    """How long this disk takes to create a small file (the raw syscalls, no Python around
    them to speak of): checkouts and exports create many, and some disks are slow at it."""
    import tempfile
    import time

    with tempfile.TemporaryDirectory(dir=where, prefix="bench-disk-") as tmp:
        t = time.perf_counter()
        for i in range(files):
            fd = os.open(os.path.join(tmp, f"f{i}"), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
            os.write(fd, b"x" * 64)
            os.close(fd)
        each = (time.perf_counter() - t) / files
    return f"disk: creating a small file takes {each * 1e3:.3f} ms here ({files} files in {where})"


# -- shared builders for the ledger benchmarks ------------------------------------------------

LEDGER_REL = "tools/codex/runs/factory_ledger.jsonl"


def git_env() -> dict[str, str]:
    """A git environment independent of the user's config (benchmarks make scratch repos)."""
    env = dict(os.environ)
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.invalid",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.invalid",
    )
    return env


def make_repo(path: Path) -> Path:
    """A real git repository with one commit (what `--repo` needs)."""
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "bench"]):
        subprocess.run(
            ["git", "-C", str(path), *args], check=True, env=git_env(), capture_output=True
        )
    return path


def build_ledger(
    path: Path, n: int, *, start: str = "2026-01-01T00:00:00Z", step_us: int = 1000
) -> tuple[int, str]:
    """Write an ``n``-event ledger fast: the real encoder, in-process, no lock or fsync.

    Timestamps increase by ``step_us`` per event (realistic: sorted by time already); the
    head file is written as appends would leave it. Returns (last seq, last hash).
    """
    import datetime as dt

    from tools.codex.factory.core.paths import head_path
    from tools.codex.factory.infra import jsonio
    from tools.codex.factory.infra.clock import format_ts, parse_instant
    from tools.codex.factory.ledger.store import GENESIS, HEAD_RECORD, encode

    t0 = parse_instant(start)
    step = dt.timedelta(microseconds=step_us)
    kinds = ("run.started", "stage.started", "stage.finished", "check.finished", "run.finished")
    prev = GENESIS
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb", buffering=1 << 20) as fh:
        for seq in range(1, n + 1):
            body = {
                "event_type": kinds[seq % len(kinds)],
                "payload": {
                    "actor": "Z_integrator",
                    "rc": 0,
                    "status": "PASS",
                    "worker": "ABCD"[seq % 4],
                },
                "prev_hash": prev,
                "run_id": f"factory_20260101_000000_1a2b3c4d_{seq // 50 % 1000:03d}",
                "seq": seq,
                "stage": "integrate",
                "ts_utc": format_ts(t0 + seq * step),
            }
            line, prev = encode(body)
            fh.write(line)
    record = jsonio.canonical({"hash": prev, "seq": n})
    head_path(path).write_bytes(record.ljust(HEAD_RECORD - 1) + b"\n")
    return n, prev


def run_child(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, bytes]:
    """Run a process to completion: (wall seconds, its own peak RSS in MiB, stdout).

    ``os.wait4`` gives the rusage of exactly this child, not of every child so far.
    """
    import subprocess
    import tempfile
    import time

    with tempfile.TemporaryFile() as errf:
        t = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf, env=env)
        out = proc.stdout.read() if proc.stdout else b""
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(proc.pid, 0)
            rc = os.waitstatus_to_exitcode(status)
            rss = (
                usage.ru_maxrss / 1024
                if sys.platform != "darwin"
                else usage.ru_maxrss / (1024 * 1024)
            )
            proc.returncode = rc
        else:  # Windows: no per-child rusage
            rc = proc.wait()
            rss = float("nan")
        wall = time.perf_counter() - t
        errf.seek(0)
        err = errf.read()
    if proc.stdout:
        proc.stdout.close()
    if rc != 0:
        raise SystemExit(
            f"{' '.join(argv[:4])} ... exited {rc}: {err.decode(errors='replace')[-500:]}"
        )
    return wall, rss, out
