"""The run index: every query it answers equals the same query by a full scan of the ledger;
an index that is missing, cut, corrupt, of another ledger or behind (a crash between an append
and its index update) is rebuilt or caught up, never ahead and never trusted."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.repos import ROOT
from tools.codex.factory.core.paths import head_path
from tools.codex.factory.infra import jsonio
from tools.codex.factory.infra.clock import Clock, format_ts, parse_instant
from tools.codex.factory.ledger.index import LedgerIndex
from tools.codex.factory.ledger.store import (
    GENESIS,
    HEAD_RECORD,
    Event,
    Filter,
    Ledger,
    encode,
    run_row_of,
)

BASE = parse_instant("2026-11-21T20:15:00Z")
RUNS = ["run_a", "run_b", "run_c", "", "run.d-1"]
TYPES = ["run.started", "stage.started", "stage.finished", "run.finished", "worktree.created"]
STATUSES = ["PASS", "BLOCKED", "FAIL", "pass", None]


def write_ledger(path: Path, rows: list[tuple[int, int, int, int, int]]) -> list[Event]:
    """A ledger as appends leave it, from (run, type, status, time step, rc) picks."""
    prev, seq, t = GENESIS, 0, BASE
    events: list[Event] = []
    out = []
    for run, kind, status, step, rc in rows:
        seq += 1
        t += dt.timedelta(milliseconds=step)
        payload: dict[str, Any] = {"actor": f"actor{rc % 2}", "kind": f"k{run % 2}", "rc": rc}
        if STATUSES[status] is not None:
            payload["status"] = STATUSES[status]
        if TYPES[kind] == "run.started":
            payload.update(base_commit="c" * 40, workers=["A", "B"][: rc % 3])
        body = {
            "event_type": TYPES[kind],
            "payload": payload,
            "prev_hash": prev,
            "run_id": RUNS[run],
            "seq": seq,
            "stage": "s",
            "ts_utc": format_ts(t),
        }
        line, prev = encode(body)
        out.append(line)
        events.append(Event.from_line(line[:-1]))
    path.write_bytes(b"".join(out))
    head_path(path).write_bytes(
        jsonio.canonical({"hash": prev, "seq": seq}).ljust(HEAD_RECORD - 1) + b"\n"
    )
    return events


def scan_select(events: list[Event], flt: Filter, limit: int | None) -> list[Event]:
    found = sorted((e for e in events if flt.matches(e)), key=Event.sort_key)
    return found if limit is None else found[-limit:] if limit > 0 else []


ROWS = st.lists(
    st.tuples(
        st.integers(0, len(RUNS) - 1),
        st.integers(0, len(TYPES) - 1),
        st.integers(0, len(STATUSES) - 1),
        st.sampled_from([0, 0, 0, 1, 7]),  # equal instants are common (one pinned clock)
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=60,
)
FILTERS = st.builds(
    Filter,
    run_id=st.none() | st.sampled_from([*RUNS, "nosuch"]),
    status=st.none() | st.sampled_from(["PASS", "blocked", "FAIL"]),
    kind=st.none() | st.sampled_from(["k0", "k1"]),
    actor=st.none() | st.sampled_from(["actor0", "actor1"]),
    event_type=st.none() | st.sampled_from([*TYPES, "run.*", "stage*", "nosuch.x"]),
    rc=st.none() | st.integers(0, 3),
    since=st.none()
    | st.integers(0, 400).map(lambda ms: format_ts(BASE + dt.timedelta(milliseconds=ms))),
)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    rows=ROWS,
    queries=st.lists(st.tuples(FILTERS, st.none() | st.integers(0, 8)), min_size=1, max_size=12),
    pick=st.integers(0, 10**6),
)
def test_every_indexed_query_equals_a_full_scan(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[int, int, int, int, int]],
    queries: list[tuple[Filter, int | None]],
    pick: int,
) -> None:
    path = tmp_path_factory.mktemp("idx") / "factory_ledger.jsonl"
    events = write_ledger(path, rows)
    with Ledger(path, Clock(BASE), fsync=False) as led:
        for flt, limit in queries:
            assert led.select(flt, limit) == scan_select(events, flt, limit), (flt, limit)
        index = led.indexed()
        assert index is not None and index.last_seq() == len(events)
        for run in [*RUNS, "nosuch"]:
            mine = [e for e in events if e.run_id == run]
            assert led.run_events(run) == mine
            row = led.run_row(run)
            assert row == (run_row_of(run, mine) if mine and run else None)
        floor = events[pick % len(events)].ts_utc  # an instant that is in the ledger
        after = pick % (len(events) + 1)
        for kind in TYPES:
            assert led.run_ids_since(kind, floor) == {
                e.run_id for e in events if e.event_type == kind and e.ts_utc >= floor
            }
            assert (
                led.events_after(after, kind, 3)
                == [e for e in events if e.seq > after and e.event_type == kind][:3]
            )
        seqs = [1, len(events), len(events) + 5, after]
        lines = path.read_bytes().split(b"\n")
        assert led.lines_at(seqs) == {s: lines[s - 1] for s in seqs if 1 <= s <= len(events)}


def index_file(path: Path) -> Path:
    return path.with_name("factory_ledger.index.sqlite3")


def built(tmp_path: Path, n: int = 40) -> tuple[Path, list[Event]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "factory_ledger.jsonl"
    rows = [(i % 4, i % 5, i % 3, 1, i % 4) for i in range(n)]
    events = write_ledger(path, rows)
    with Ledger(path, Clock(BASE), fsync=False) as led:
        assert led.indexed() is not None
    assert index_file(path).is_file()
    return path, events


def answers(path: Path) -> tuple[list[Event], int]:
    with Ledger(path, Clock(BASE), fsync=False) as led:
        got = led.run_events("run_b")
        index = led.indexed()
        assert index is not None
        return got, index.rebuilt


def test_a_deleted_index_is_rebuilt(tmp_path: Path) -> None:
    path, events = built(tmp_path)
    index_file(path).unlink()
    got, rebuilt = answers(path)
    assert got == [e for e in events if e.run_id == "run_b"] and rebuilt == 1


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "directory", "symlink"])
def test_a_damaged_index_is_rebuilt(tmp_path: Path, damage: str) -> None:
    path, events = built(tmp_path)
    idx = index_file(path)
    for suffix in ("-wal", "-shm"):
        Path(f"{idx}{suffix}").unlink(missing_ok=True)
    data = idx.read_bytes()
    idx.unlink()
    if damage == "truncated":
        idx.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        idx.write_bytes(b"not a database\n" * 100)
    elif damage == "empty":
        idx.write_bytes(b"")
    elif damage == "directory":
        idx.mkdir()
    else:
        target = tmp_path / "elsewhere.sqlite3"
        target.write_bytes(data)
        idx.symlink_to(target)
    if damage == "directory":  # not ours to delete: the file is read instead, every time
        with Ledger(path, Clock(BASE), fsync=False) as led:
            assert led.indexed() is None
            assert led.run_events("run_b") == [e for e in events if e.run_id == "run_b"]
        assert idx.is_dir()
        return
    got, _rebuilt = answers(path)
    assert got == [e for e in events if e.run_id == "run_b"]
    assert idx.is_file() and not idx.is_symlink()
    if damage == "symlink":
        assert target.read_bytes() == data  # not written through the link


def test_an_index_of_another_ledger_is_rebuilt(tmp_path: Path) -> None:
    path, events = built(tmp_path / "one")
    other, _ = built(tmp_path / "two", n=55)
    index_file(path).unlink()
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{index_file(other)}{suffix}")
        if src.exists():
            Path(f"{index_file(path)}{suffix}").write_bytes(src.read_bytes())
    got, rebuilt = answers(path)
    assert got == [e for e in events if e.run_id == "run_b"] and rebuilt == 1


def test_an_index_of_a_rewritten_ledger_is_named_then_rebuilt(tmp_path: Path) -> None:
    path, _events = built(tmp_path)
    rows = [(i % 4, (i + 1) % 5, i % 3, 1, i % 4) for i in range(40)]  # same length, other lines
    rewritten = write_ledger(path, rows)
    with Ledger(path, Clock(BASE), fsync=False) as led:
        end = led.check_end()
        assert not end.ok and "not the one indexed" in end.reason
        assert led.run_events("run_b") == [e for e in rewritten if e.run_id == "run_b"]
        assert led.check_end().ok  # rebuilt from the file: it is only a cache


def test_appends_index_in_batches_and_close_flushes_them(tmp_path: Path) -> None:
    path, _events = built(tmp_path, n=3)
    with Ledger(path, Clock(BASE), fsync=False) as led:
        for i in range(5):
            led.append("ledger.note", "run_z", "s", {"i": i})
        assert LedgerIndex(path).last_seq() == 3  # still pending: in the file, not indexed
    assert LedgerIndex(path).last_seq() == 8  # close() flushed them


def test_lines_appended_by_another_process_between_batches_are_not_skipped(
    tmp_path: Path,
) -> None:
    path, _ = built(tmp_path, n=3)
    mine = Ledger(path, Clock(BASE), fsync=False)
    other = Ledger(path, Clock(BASE), fsync=False)
    mine.append("ledger.note", "run_m", "s", {})  # seq 4, pending in `mine`
    other.append("ledger.note", "run_o", "s", {})  # seq 5, pending in `other`
    mine.append("ledger.note", "run_m", "s", {})  # seq 6: `mine` holds 4 and 6, not 5
    mine.close()
    index = LedgerIndex(path)
    assert index.last_seq() == 6
    assert [e.seq for e in index.entries(by_seq=True)] == [1, 2, 3, 4, 5, 6]
    other.close()
    index.close()


CRASHER = r"""
import os, sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.ledger.store import Ledger
led = Ledger(Path(sys.argv[1]), Clock(), fsync=False)
i = 0
while True:
    led.append("crash.append", f"run_{i % 7}", "loop", {"i": i})
    if i % 50 == 0:
        led.indexed()  # flush and catch up now and then, as a query would
    os.write(1, b"%d\n" % i)
    i += 1
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL does not exist on Windows")
def test_kill_9_between_append_and_index_update_leaves_an_index_that_is_never_ahead(
    tmp_path: Path,
) -> None:
    path = tmp_path / "factory_ledger.jsonl"
    for trial in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CRASHER, str(path), str(ROOT)], stdout=subprocess.PIPE
        )
        assert child.stdout is not None
        for _ in range(40 + 37 * trial):  # a different moment each time
            assert child.stdout.readline()
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        with Ledger(path, Clock(), fsync=False) as led:
            if led.check_end().torn_tail:
                led.repair()
            size = path.stat().st_size
            behind = LedgerIndex(path)
            try:
                assert behind.end() <= size  # never ahead of the file
            finally:
                behind.close()
            events = list(led.events())
            for run in (f"run_{k}" for k in range(7)):
                assert led.run_events(run) == [e for e in events if e.run_id == run]
            index = led.indexed()
            assert index is not None and index.last_seq() == len(events)


def test_an_index_that_cannot_be_written_falls_back_to_reading_the_file(tmp_path: Path) -> None:
    path, events = built(tmp_path)
    idx = index_file(path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{idx}{suffix}").unlink(missing_ok=True)
    os.mkfifo(idx) if hasattr(os, "mkfifo") else idx.mkdir()
    try:
        with Ledger(path, Clock(BASE), fsync=False) as led:
            assert led.run_events("run_b") == [e for e in events if e.run_id == "run_b"]
    finally:
        if idx.is_dir():
            idx.rmdir()
        else:
            idx.unlink(missing_ok=True)


def test_the_index_is_ignored_by_verify(tmp_path: Path) -> None:
    path, _events = built(tmp_path)
    db = sqlite3.connect(index_file(path))
    db.execute("DELETE FROM events WHERE seq = 2")
    db.commit()
    db.close()
    data = bytearray(path.read_bytes())
    data[200] ^= 0x01  # an edited line: verify reads the file, not the index
    path.write_bytes(bytes(data))
    with Ledger(path, Clock(BASE), fsync=False) as led:
        assert not led.verify().ok


def test_a_limit_takes_the_last_in_display_order_when_instants_are_equal(tmp_path: Path) -> None:
    """One pinned clock: every ts_utc equal; the last N by (ts, type, seq) are not the last N
    lines of the file."""
    path = tmp_path / "factory_ledger.jsonl"
    events = write_ledger(path, [(0, 1, 0, 0, 0), (0, 0, 0, 0, 0), (0, 3, 0, 0, 0)])
    with Ledger(path, Clock(BASE), fsync=False) as led:
        for limit in (1, 2):
            got = led.select(Filter(run_id="run_a"), limit)
            assert [e.event_type for e in got] == ["run.finished", "run.started", "stage.started"][
                -limit:
            ]
            assert got == scan_select(events, Filter(run_id="run_a"), limit)


def test_a_payload_holding_the_line_s_own_keys_is_indexed_by_the_line_s_keys(
    tmp_path: Path,
) -> None:
    """A payload object may hold keys named like the line's own (prev_hash, run_id, seq):
    the index reads the line's, which follow the payload."""
    path = tmp_path / "factory_ledger.jsonl"
    fake = {"prev_hash": "f" * 64, "run_id": "run_x", "seq": 99, "stage": "s", "ts_utc": "x"}
    with Ledger(path, Clock(BASE), fsync=False) as led:
        led.append("run.started", "run_a", "s", {"nested": fake, **fake})
        led.append("stage.started", "run_b", "s", {"inner": {"z": fake}})
    with Ledger(path, Clock(BASE), fsync=False) as led:
        assert led.reindex()[0] == 2
        assert [e.seq for e in led.run_events("run_a")] == [1]
        assert [e.seq for e in led.run_events("run_b")] == [2]
        assert led.run_events("run_x") == []


def test_a_rebuild_leaves_every_secondary_index_in_place(tmp_path: Path) -> None:
    """A rebuild drops the secondary indexes while it inserts and builds them at the end."""
    path, events = built(tmp_path)
    with Ledger(path, Clock(BASE), fsync=False) as led:
        assert led.reindex()[0] == len(events)
    db = sqlite3.connect(index_file(path))
    try:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        db.close()
    assert {"events_run", "events_type", "events_ts"} <= names
    got, rebuilt = answers(path)
    assert got == [e for e in events if e.run_id == "run_b"] and rebuilt == 0


def test_a_link_at_the_rebuild_name_is_never_written_through(tmp_path: Path) -> None:
    """A full rebuild writes beside the index first: a symlink planted at that name is
    replaced, never followed, and the rebuilt index still answers."""
    path, events = built(tmp_path / "l")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep")
    os.symlink(victim, index_file(path).with_name("factory_ledger.index.sqlite3.rebuild"))
    with Ledger(path, Clock(BASE), fsync=False) as led:
        assert led.reindex()[0] == len(events)
    assert victim.read_bytes() == b"keep"
    assert not index_file(path).with_name("factory_ledger.index.sqlite3.rebuild").exists()
    got, _ = answers(path)
    assert got == [e for e in events if e.run_id == "run_b"]


_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["prev_hash", "run_id", "seq", "stage", "ts_utc", "hash", "x", "é"])
            | st.text(max_size=5),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([*TYPES, "Odd.Type", "x"]),
            st.sampled_from([*RUNS, "run with space", "ünï"]),
            _NAMES,
            st.dictionaries(st.text(max_size=6), _JSON, max_size=4),
            st.sampled_from(["2026-11-21T20:15:00.000001Z", "", "ts\\u00e9", "é"]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_the_block_scan_reads_every_canonical_line_as_json_does(
    items: list[tuple[str, str, str, dict[str, Any], str]],
) -> None:
    """The rebuild reads lines a block at a time with one pattern; for any canonical event
    (payloads holding the envelope's own keys, quotes, escapes, non-ASCII) every row equals
    what json.loads reads from the line, and each run event's payload is the line's."""
    import json

    from tools.codex.factory.ledger.index import parse_block

    prev, lines = GENESIS, []
    for seq, (etype, run_id, stage, payload, ts) in enumerate(items, start=1):
        body = {
            "event_type": etype, "payload": payload, "prev_hash": prev, "run_id": run_id,
            "seq": seq, "stage": stage, "ts_utc": ts,
        }  # fmt: skip
        line, prev = encode(body)
        lines.append(line)
    data = b"".join(lines)
    rows, payloads = parse_block(data, 7)
    off = 7
    want, want_payloads = [], []
    for i, line in enumerate(lines):
        obj = json.loads(line)
        want.append(
            (obj["seq"], off, len(line), obj["run_id"], obj["event_type"], obj["ts_utc"],
             int(obj["hash"][:15], 16))
        )  # fmt: skip
        if obj["event_type"] in ("run.started", "run.finished"):
            want_payloads.append((i, obj["payload"]))
        off += len(line)
    assert [tuple(r) for r in rows] == want
    assert payloads == want_payloads


@pytest.mark.parametrize("block", [1, 5, 64, 1000, 1 << 20])
def test_reading_in_blocks_gives_every_line_once_wherever_the_blocks_cut(
    tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines cut by a block boundary, lines longer than a block, a torn tail: the block
    reader gives what parse_line gives for each complete line, at its offset."""
    from tools.codex.factory.ledger import index

    path = tmp_path / "factory_ledger.jsonl"
    write_ledger(path, [(i % 4, i % 5, i % 3, 1, i % 4) for i in range(30)])
    with open(path, "ab") as fh:
        fh.write(b'{"event_type":"run.started","hash":"ab')  # torn: never read
    data = path.read_bytes()
    want, off = [], 0
    for line in data.split(b"\n")[:-1]:
        want.append(index.parse_line(line, off))
        off += len(line) + 1
    monkeypatch.setattr(index, "_BLOCK", block)
    with open(path, "rb") as fh:
        assert list(index.scan(fh)) == want
        start = want[7][0].off
        assert list(index.scan(fh, start)) == want[7:]


def test_a_folder_at_the_index_s_name_is_named_by_reindex_and_reads_fall_back(
    tmp_path: Path,
) -> None:
    """The rebuilt index cannot take the name: one line naming the index (not the side file
    it was built in), and queries read the file instead."""
    from tools.codex.factory.errors import BlockedError

    path, events = built(tmp_path)
    for side in ("", "-wal", "-shm"):
        Path(f"{index_file(path)}{side}").unlink(missing_ok=True)
    index_file(path).mkdir()
    with Ledger(path, Clock(BASE), fsync=False) as led:
        with pytest.raises(BlockedError) as exc:
            led.reindex()
        assert str(exc.value) == (
            f"ledger index {index_file(path)} cannot be written: Is a directory"
        )
        assert led.run_events("run_b") == [e for e in events if e.run_id == "run_b"]
    assert not index_file(path).with_name("factory_ledger.index.sqlite3.rebuild").exists()
