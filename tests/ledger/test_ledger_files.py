"""The ledger's three files (ledger, head, lock) are regular files opened through no link and
without blocking, and ``ledger verify`` checks the exact bytes of every line."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.repos import PINNED, make_repo, run_cli
from tools.codex.factory.errors import BlockedError, FactoryError
from tools.codex.factory.infra import jsonio
from tools.codex.factory.infra.clock import Clock, format_ts, parse_instant
from tools.codex.factory.ledger.store import (
    GENESIS,
    HEAD_RECORD,
    MISSING_HEAD_FIX,
    Filter,
    Ledger,
    encode,
)

T0 = parse_instant(PINNED)
RUNS_REL = "tools/codex/runs"
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")


def at(seconds: float) -> Clock:
    return Clock(T0 + dt.timedelta(seconds=seconds))


def build(path: Path, n: int) -> None:
    with Ledger(path, at(0), fsync=False) as led:
        for i in range(n):
            led.clock = at(i)
            led.append("stage.finished", f"run_{i % 2}", "launch", {"i": i, "status": "PASS"})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with a 3-event ledger and a user's source file to protect."""
    repo = make_repo(tmp_path / "repo")
    build(repo / RUNS_REL / "factory_ledger.jsonl", 3)
    return repo


def paths(repo: Path) -> dict[str, Path]:
    runs = repo / RUNS_REL
    return {
        "ledger": runs / "factory_ledger.jsonl",
        "head": runs / "factory_ledger.sha256",
        "lock": runs / "factory_ledger.jsonl.lock",
    }


# Which operations open which file.
OPENS = {
    "ledger": {"append", "read_head", "verify", "events", "tail", "repair"},
    "head": {"append", "read_head_file", "verify", "repair"},
}


def all_ops(led: Ledger) -> dict[str, Callable[[], object]]:
    """Every way the ledger's files are opened."""
    return {
        "append": lambda: led.append("ledger.note", "", "t", {}),
        "read_head": led.read_head,
        "read_head_file": led.read_head_file,
        "verify": led.verify,
        "events": lambda: list(led.events()),
        "tail": lambda: led.select(Filter(), 2),  # reads backwards from the end
        "repair": led.repair,
    }


def refusal(repo: Path, which: str, kind: str) -> str:
    rel = f"{RUNS_REL}/{paths(repo)[which].name}"
    return f"ledger: {rel} is {kind}; the ledger's files must be regular files: remove it"


# -- links -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "op"), [(which, op) for which, ops in OPENS.items() for op in sorted(ops)]
)
def test_a_symlinked_ledger_or_head_file_is_refused_and_never_written_through(
    repo: Path, which: str, op: str
) -> None:
    user_file = repo / "src" / "app.py"
    before = user_file.read_bytes()
    target = paths(repo)[which]
    target.unlink()
    target.symlink_to(user_file)
    led = Ledger(target.with_name("factory_ledger.jsonl"), at(10), base=repo)
    with led, pytest.raises(BlockedError) as exc:
        all_ops(led)[op]()
    assert str(exc.value) == refusal(repo, which, "a symbolic link")
    assert user_file.read_bytes() == before
    assert target.is_symlink()


def test_a_symlinked_lock_file_creates_nothing_outside(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "made-by-the-lock"
    outside.parent.mkdir()
    lock = paths(repo)["lock"]
    lock.unlink(missing_ok=True)
    lock.symlink_to(outside)
    ledger_before = paths(repo)["ledger"].read_bytes()
    with Ledger(paths(repo)["ledger"], at(10), base=repo) as led:
        for op in ("append", "repair"):
            with pytest.raises(BlockedError) as exc:
                all_ops(led)[op]()
            assert str(exc.value) == refusal(repo, "lock", "a symbolic link")
    assert not outside.exists()
    assert paths(repo)["ledger"].read_bytes() == ledger_before


def test_cli_names_a_symlinked_head_file_in_one_line(repo: Path) -> None:
    user_file = repo / "src" / "app.py"
    before = user_file.read_bytes()
    head = paths(repo)["head"]
    head.unlink()
    head.symlink_to(user_file)
    for args in (["ledger", "verify"], ["ledger", "repair"], ["ledger", "verify", "--no-head"]):
        res = run_cli("--repo", str(repo), *args, timeout=60)
        assert res.returncode == 3, (args, res.stdout, res.stderr)
        assert res.stderr.strip() == "factory: error: " + refusal(repo, "head", "a symbolic link")
        assert "VERIFY OK" not in res.stdout
    assert user_file.read_bytes() == before


def test_repair_never_writes_through_a_link_at_the_side_file_name(
    repo: Path, tmp_path: Path
) -> None:
    ledger = paths(repo)["ledger"]
    with open(ledger, "ab") as fh:
        fh.write(b'{"event_type":"run.started","hash":"ab')  # a torn tail
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    stamp = at(60).now().strftime("%Y%m%dT%H%M%S%fZ")
    planted = ledger.with_name(f"{ledger.name}.torn-{stamp}")
    planted.symlink_to(outside / "written-through")  # dangling: following it creates it
    with Ledger(ledger, at(60), base=repo) as led:
        out = led.repair()
        assert out["repaired"] and out["side_file"] == f"{planted.name}-2"
        assert led.verify().ok
    assert list(outside.iterdir()) == []
    assert planted.is_symlink()


# -- hard links ------------------------------------------------------------------------------------
def hard_refusal(repo: Path, name: str, links: int = 2) -> str:
    return (
        f"ledger: {RUNS_REL}/{name} has {links} hard links; the ledger's files must be regular "
        "files with one link: remove it"
    )


def plant_hard_link(repo: Path, name: str) -> tuple[Path, bytes]:
    """A user's file takes the place of one of the ledger's files, as a second name of it:
    for the ledger itself, a copy of the ledger (so every read still works)."""
    target = repo / RUNS_REL / name
    user_file = repo / "src" / "victim.txt"
    data = target.read_bytes() if target.exists() else b"the user's own bytes\n"
    user_file.write_bytes(data)
    target.unlink(missing_ok=True)
    os.link(user_file, target)
    return user_file, data


@pytest.mark.parametrize(
    ("name", "op"),
    [
        ("factory_ledger.jsonl", "append"),
        ("factory_ledger.jsonl", "repair"),
        ("factory_ledger.sha256", "append"),
        ("factory_ledger.sha256", "repair"),
        ("factory_ledger.jsonl.lock", "append"),
        ("factory_ledger.jsonl.lock", "verify"),
    ],
)
def test_a_hard_link_at_a_ledger_file_is_refused_and_never_written(
    repo: Path, name: str, op: str
) -> None:
    """``ln src/x.py tools/codex/runs/factory_ledger.sha256``: the head record would be written
    over the user's file (the ledger appended to it, truncated by a repair)."""
    ledger = paths(repo)["ledger"]
    if op == "repair":
        with open(ledger, "ab") as fh:
            fh.write(b'{"event_type":"run.started","hash":"ab')  # a torn tail to cut
    user_file, before = plant_hard_link(repo, name)
    with Ledger(ledger, at(10), base=repo) as led, pytest.raises(BlockedError) as exc:
        all_ops(led)[op]()
    assert str(exc.value) == hard_refusal(repo, name)
    assert user_file.read_bytes() == before


@pytest.mark.parametrize(
    "name",
    [
        "factory_ledger.sha256",
        "factory_ledger.jsonl.lock",
        "factory_ledger.index.sqlite3",
        "factory_ledger.index.sqlite3-wal",
        "factory_ledger.index.sqlite3-shm",
        "factory_ledger.index.sqlite3-journal",
        "factory_ledger.index.sqlite3.rebuild",
    ],
)
def test_launch_refuses_a_hard_link_at_a_ledger_file_in_one_line(repo: Path, name: str) -> None:
    user_file, before = plant_hard_link(repo, name)
    res = run_cli("--repo", str(repo), "--now", PINNED, "launch", "--dry-run", timeout=60)
    assert res.returncode == 3, res.stdout + res.stderr
    assert res.stderr.strip() == "factory: error: " + hard_refusal(repo, name)
    assert user_file.read_bytes() == before


def test_an_empty_file_hard_linked_as_the_ledger_is_refused(repo: Path) -> None:
    """A new ledger's append-open: an empty user file linked at the ledger's name."""
    for name in ("factory_ledger.jsonl", "factory_ledger.sha256", "factory_ledger.jsonl.lock"):
        (repo / RUNS_REL / name).unlink()
    user_file = repo / "src" / "empty.py"
    user_file.write_bytes(b"")
    os.link(user_file, paths(repo)["ledger"])
    res = run_cli("--repo", str(repo), "--now", PINNED, "launch", "--dry-run", timeout=60)
    assert res.returncode == 3, res.stdout + res.stderr
    assert res.stderr.strip() == "factory: error: " + hard_refusal(repo, "factory_ledger.jsonl")
    assert user_file.read_bytes() == b""


def test_a_hard_link_at_the_run_lock_is_refused(repo: Path) -> None:
    from tests.support.factory import launch_dry, run_dir

    run_id = launch_dry(repo)
    lock = run_dir(repo, run_id) / "locks" / "run.lock"
    user_file = repo / "src" / "victim.txt"
    user_file.write_bytes(b"mine\n")
    lock.unlink(missing_ok=True)
    os.link(user_file, lock)
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 3, res.stdout + res.stderr
    assert res.stderr.strip() == (
        f"factory: error: run lock of {run_id}: {RUNS_REL}/{run_id}/locks/run.lock has 2 hard "
        "links; lock files must be regular files with one link: remove it"
    )
    assert user_file.read_bytes() == b"mine\n"


# -- FIFOs -----------------------------------------------------------------------------------------


@needs_fifo
@pytest.mark.parametrize(
    ("which", "args"),
    [
        ("ledger", ["ledger", "verify"]),
        ("ledger", ["ledger", "--limit", "2"]),
        ("ledger", ["watch", "--run-id", "run_0", "--timeout", "5"]),
        ("head", ["ledger", "verify"]),
        ("lock", ["ledger", "repair"]),
    ],
)
def test_a_fifo_at_a_ledger_path_is_refused_not_waited_on(
    repo: Path, which: str, args: list[str]
) -> None:
    target = paths(repo)[which]
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    res = run_cli("--repo", str(repo), *args, timeout=30)  # a hang fails the test here
    assert res.returncode == 3, (res.stdout, res.stderr)
    assert res.stderr.strip() == "factory: error: " + refusal(repo, which, "a FIFO")


# -- verify checks the exact bytes --------------------------------------------------------------


def write_head(path: Path, seq: int, digest: str) -> None:
    record = jsonio.canonical({"hash": digest, "seq": seq})
    path.with_name("factory_ledger.sha256").write_bytes(record.ljust(HEAD_RECORD - 1) + b"\n")


def forge(unhashed: bytes) -> tuple[bytes, str]:
    """A line hashed and chained as the writer would, whatever the bytes around it: the hash
    member goes after the first member, the hash covers everything else."""
    k = unhashed.index(b'",') + 2
    digest = hashlib.sha256(unhashed).hexdigest()
    return unhashed[:k] + b'"hash":"' + digest.encode() + b'",' + unhashed[k:] + b"\n", digest


def good_line(seq: int, prev: str, ts: str) -> tuple[bytes, str]:
    return encode(
        {
            "event_type": "ledger.note",
            "payload": {"i": seq},
            "prev_hash": prev,
            "run_id": "r1",
            "seq": seq,
            "stage": "s",
            "ts_utc": ts,
        }
    )


TS = format_ts(T0)
BAD_LINES = {
    # readers cannot parse these at all
    "trailing comma": b'{"event_type":"ledger.note","payload":{"a":1,},"prev_hash":"{prev}",'
    b'"run_id":"r1","seq":{seq},"stage":"s","ts_utc":"{ts}"}',
    "leading zero seq": b'{"event_type":"ledger.note","payload":{},"prev_hash":"{prev}",'
    b'"run_id":"r1","seq":0{seq},"stage":"s","ts_utc":"{ts}"}',
    "control char": b'{"event_type":"ledger.note","payload":{},"prev_hash":"{prev}",'
    b'"run_id":"r\x011","seq":{seq},"stage":"s","ts_utc":"{ts}"}',
    "not utf-8": b'{"event_type":"ledger.note","payload":{"a":"\xff"},"prev_hash":"{prev}",'
    b'"run_id":"r1","seq":{seq},"stage":"s","ts_utc":"{ts}"}',
    "backslash run_id": b'{"event_type":"ledger.note","payload":{},"prev_hash":"{prev}",'
    b'"run_id":"r1\\","seq":{seq},"stage":"s","ts_utc":"{ts}"}',
    # valid JSON, but not what the factory writes
    "spaces": b'{"event_type":"ledger.note","payload":{"a": 1},"prev_hash":"{prev}",'
    b'"run_id":"r1","seq":{seq},"stage":"s","ts_utc":"{ts}"}',
    "unsorted keys": b'{"event_type":"ledger.note","payload":{"b":1,"a":2},"prev_hash":"{prev}",'
    b'"run_id":"r1","seq":{seq},"stage":"s","ts_utc":"{ts}"}',
    "escape": b'{"event_type":"ledger.note","payload":{"a":"\\u0041"},"prev_hash":"{prev}",'
    b'"run_id":"r1","seq":{seq},"stage":"s","ts_utc":"{ts}"}',
    "escaped run_id": b'{"event_type":"ledger.note","payload":{},"prev_hash":"{prev}",'
    b'"run_id":"r\\u0031","seq":{seq},"stage":"s","ts_utc":"{ts}"}',
    "float": b'{"event_type":"ledger.note","payload":{"a":1e2},"prev_hash":"{prev}",'
    b'"run_id":"r1","seq":{seq},"stage":"s","ts_utc":"{ts}"}',
    "duplicate key": b'{"event_type":"ledger.note","payload":{"a":1,"a":2},"prev_hash":"{prev}",'
    b'"run_id":"r1","seq":{seq},"stage":"s","ts_utc":"{ts}"}',
    # parsed, but not a ledger event as readers take it
    "no payload": b'{"event_type":"ledger.note","prev_hash":"{prev}",'
    b'"run_id":"r1","seq":{seq},"stage":"s","ts_utc":"{ts}"}',
    "payload a list": b'{"event_type":"ledger.note","payload":[1],"prev_hash":"{prev}",'
    b'"run_id":"r1","seq":{seq},"stage":"s","ts_utc":"{ts}"}',
    "extra member": b'{"event_type":"ledger.note","payload":{},"pid":1,"prev_hash":"{prev}",'
    b'"run_id":"r1","seq":{seq},"stage":"s","ts_utc":"{ts}"}',
}


@pytest.mark.parametrize("where", ["alone", "mid-block"])
@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_a_chained_line_that_is_not_canonical_json_fails_naming_its_seq(
    tmp_path: Path, kind: str, where: str
) -> None:
    """Hash and chain are right (anyone can compute them); the bytes are not what the
    factory writes, so readers would refuse or misread the line: verify must say so."""
    good = b'{"event_type":"ledger.note","payload":{"i":1},"prev_hash":"{prev}",'
    good += b'"run_id":"r1","seq":1,"stage":"s","ts_utc":"{ts}"}'
    forged = forge(good.replace(b"{prev}", GENESIS.encode()).replace(b"{ts}", TS.encode()))
    assert forged == good_line(1, GENESIS, TS)  # the forger writes what the encoder writes
    path = tmp_path / "factory_ledger.jsonl"
    total, bad_at = (3, 2) if where == "alone" else (600, 377)  # 600 lines span blocks
    prev, out = GENESIS, []
    for seq in range(1, total + 1):
        if seq == bad_at:
            template = BAD_LINES[kind]
            body = template.replace(b"{prev}", prev.encode()).replace(b"{ts}", TS.encode())
            line, prev = forge(body.replace(b"{seq}", str(seq).encode()))
        else:
            line, prev = good_line(seq, prev, TS)
        out.append(line)
    path.write_bytes(b"".join(out))
    write_head(path, total, prev)
    res = Ledger(path, at(0)).verify()
    assert not res.ok and res.first_bad_seq == bad_at, res.reason
    assert res.lines == bad_at - 1 and not res.torn_tail
    assert "JSON" in res.reason, res.reason


def test_a_cr_inserted_before_one_newline_fails_at_that_seq(repo: Path) -> None:
    ledger = paths(repo)["ledger"]
    lines = ledger.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1][:-1] + b"\r\n"
    ledger.write_bytes(b"".join(lines))
    res = Ledger(ledger, at(0)).verify()
    assert not res.ok and res.first_bad_seq == 2 and res.lines == 1
    assert res.reason.startswith("line ends with CR")


def test_cut_lines_with_the_head_file_deleted_fail_unless_no_head(repo: Path) -> None:
    ledger, head = paths(repo)["ledger"], paths(repo)["head"]
    lines = ledger.read_bytes().splitlines(keepends=True)
    ledger.write_bytes(b"".join(lines[:1]))  # the last two events cut off
    head.unlink()
    res = run_cli("--repo", str(repo), "ledger", "verify", timeout=60)
    assert res.returncode == 3, res.stdout
    assert "VERIFY FAILED at seq 2: head file factory_ledger.sha256 is missing" in res.stdout
    res = run_cli("--repo", str(repo), "ledger", "verify", "--no-head", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "VERIFY OK" in res.stdout and "accepted: --no-head" in res.stdout
    # Preflight and doctor say what to do about it.
    pre = run_cli("--repo", str(repo), "preflight", timeout=120)
    assert "FAIL ledger: seq 2: head file factory_ledger.sha256 is missing" in pre.stdout
    assert f"-> fix: {MISSING_HEAD_FIX}" in pre.stdout
    doc = run_cli("--repo", str(repo), "doctor", timeout=120)
    ledger_line = next(ln for ln in doc.stdout.splitlines() if ln.startswith("FAIL ledger:"))
    assert "head file factory_ledger.sha256 is missing" in ledger_line
    assert MISSING_HEAD_FIX in ledger_line
    # An empty or absent ledger needs no head file.
    ledger.write_bytes(b"")
    assert Ledger(ledger, at(0)).verify().ok
    ledger.unlink()
    assert Ledger(ledger, at(0)).verify().ok


def test_a_huge_head_file_is_not_read_whole(repo: Path) -> None:
    head = paths(repo)["head"]
    with open(head, "r+b") as fh:
        fh.seek(1 << 30)  # a sparse 1 GiB file: reading it whole would take the memory
        fh.write(b"\n")
    with pytest.raises(FactoryError, match=r"head file factory_ledger\.sha256 is unreadable"):
        Ledger(paths(repo)["ledger"], at(0)).verify()


def test_doctor_does_not_take_a_dangling_ledger_link_for_no_ledger(
    repo: Path, tmp_path: Path
) -> None:
    ledger = paths(repo)["ledger"]
    ledger.unlink()
    ledger.symlink_to(tmp_path / "nowhere.jsonl")
    res = run_cli("--repo", str(repo), "doctor", timeout=120)
    line = next(ln for ln in res.stdout.splitlines() if " ledger:" in ln)
    assert line.startswith("FAIL ledger: " + refusal(repo, "ledger", "a symbolic link")), line
    assert not (tmp_path / "nowhere.jsonl").exists()
