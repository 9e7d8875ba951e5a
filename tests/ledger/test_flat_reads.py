"""No command but ``ledger verify`` and ``ledger reindex`` reads the whole ledger.

A real run is made at the end of a ledger of 200,000 events (other runs shaped like it, written
with the real encoder), then every command that works on one run, or on the ledger's end, runs
in this process while the kernel counts the bytes it reads (``rchar`` in /proc/self/io: every
read system call, page cache or not). Each must read a small fraction of the ledger.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.support.repos import make_repo, run_cli
from tools.codex.factory.core.paths import head_path
from tools.codex.factory.infra import jsonio
from tools.codex.factory.infra.clock import format_ts, parse_instant
from tools.codex.factory.ledger.store import GENESIS, HEAD_RECORD, encode

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/io").exists(), reason="counts reads with Linux's /proc/self/io"
)
EVENTS = 200_000
LEDGER = "tools/codex/runs/factory_ledger.jsonl"
NOW = "2026-11-21T20:15:00Z"


def bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def fill(path: Path, template: list[dict[str, object]], n: int) -> None:
    step = dt.timedelta(microseconds=1000)
    t0 = parse_instant(NOW) - dt.timedelta(minutes=1) - n * step
    prev = GENESIS
    with open(path, "wb", buffering=1 << 20) as fh:
        for seq in range(1, n + 1):
            run, i = divmod(seq - 1, len(template))
            src = template[i]
            line, prev = encode(
                {
                    "event_type": src["event_type"],
                    "payload": src["payload"],
                    "prev_hash": prev,
                    "run_id": f"other_{run:07d}",
                    "seq": seq,
                    "stage": src["stage"],
                    "ts_utc": format_ts(t0 + seq * step),
                }
            )
            fh.write(line)
    head_path(path).write_bytes(
        jsonio.canonical({"hash": prev, "seq": n}).ljust(HEAD_RECORD - 1) + b"\n"
    )


def cli(repo: Path, *args: str) -> str:
    res = run_cli("--repo", str(repo), "--now", NOW, *args)
    assert res.returncode in (0, 3), res.stdout + res.stderr
    return res.stdout


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("flat")
    template_repo = make_repo(root / "template")
    run = json.loads(cli(template_repo, "oneshot", "--dry-run", "--base-ref", "HEAD", "--json"))
    lines = (template_repo / LEDGER).read_bytes().splitlines()
    template = [e for e in map(json.loads, lines) if e["run_id"] == run["run_id"]]
    repo = make_repo(root / "repo")
    (repo / LEDGER).parent.mkdir(parents=True)
    fill(repo / LEDGER, template, EVENTS)
    cli(repo, "ledger", "reindex")  # reads the whole file, as it must
    run_id = json.loads(cli(repo, "oneshot", "--dry-run", "--base-ref", "HEAD", "--json"))["run_id"]
    return repo, run_id


@pytest.mark.parametrize(
    "args",
    [
        ["oneshot", "--dry-run", "--base-ref", "HEAD"],
        ["ledger-replay", "--run-id", "{run}"],
        ["ledger", "--run-id", "{run}"],
        ["ledger", "--run-id", "{run}", "--limit", "5"],
        ["ledger", "--event-type", "run.finished", "--limit", "3"],
        ["ledger", "--limit", "50"],
        ["watch", "--run-id", "{run}", "--timeout", "30"],
        ["doctor"],
        ["preflight"],
        ["clean", "--run-id", "{run}"],
        ["bundle-validate", "--run-id", "{run}"],
        ["print-report", "--run-id", "{run}"],
    ],
    ids=lambda a: " ".join(a).replace("{run}", "X"),
)
def test_a_command_reads_a_small_fraction_of_a_large_ledger(
    big: tuple[Path, str], args: list[str]
) -> None:
    repo, run_id = big
    size = (repo / LEDGER).stat().st_size
    before = bytes_read()
    cli(repo, *[a.replace("{run}", run_id) for a in args])
    read = bytes_read() - before
    assert read < size / 50, f"read {read:,} bytes of a {size:,}-byte ledger"


def test_verify_does_read_it_all(big: tuple[Path, str]) -> None:
    """The counter sees a whole read: the fractions above are not an artefact of caching."""
    repo, _run = big
    size = (repo / LEDGER).stat().st_size
    before = bytes_read()
    assert "VERIFY OK" in cli(repo, "ledger", "verify")
    assert bytes_read() - before >= size
