"""Ledger behaviour on real files: append, torn tails and repair, corruption, CRLF, head file."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import orjson
import pytest

from tests.support.repos import PINNED
from tools.codex.factory.errors import LedgerCorruptError, TornTailError, UsageError
from tools.codex.factory.infra import jsonio
from tools.codex.factory.infra.clock import Clock, format_ts, parse_instant
from tools.codex.factory.ledger.store import GENESIS, Event, Filter, Ledger, line_hash_ok

T0 = parse_instant(PINNED)


def at(seconds: float) -> Clock:
    return Clock(T0 + dt.timedelta(seconds=seconds))


def build(path: Path, n: int, *, step: float = 1.0) -> list[Event]:
    out = []
    with Ledger(path, at(0), fsync=False) as led:
        for i in range(n):
            led.clock = at(i * step)
            out.append(
                led.append(
                    "stage.finished" if i % 2 else "run.started",
                    f"run_{i % 3}",
                    "launch",
                    {"i": i, "status": "PASS"},
                )
            )
    return out


@pytest.fixture
def lpath(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "factory_ledger.jsonl"


def side_files(lpath: Path) -> list[Path]:
    return sorted(lpath.parent.glob(f"{lpath.name}.torn-*"))


# -- append ---------------------------------------------------------------------------------


def test_append_chains_seq_prev_hash_and_head_file(lpath: Path) -> None:
    events = build(lpath, 5)
    raw = lpath.read_bytes()
    lines = raw.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 6 and b"\r" not in raw
    prev = GENESIS
    for i, (line, ev) in enumerate(zip(lines[:-1], events, strict=True), 1):
        obj = orjson.loads(line)
        assert obj["seq"] == ev.seq == i
        assert obj["prev_hash"] == prev
        assert line == jsonio.canonical(obj)  # stored canonically
        body = {k: v for k, v in obj.items() if k != "hash"}
        assert obj["hash"] == hashlib.sha256(jsonio.canonical(body)).hexdigest() == ev.hash
        assert line_hash_ok(line)
        prev = obj["hash"]
    head = orjson.loads(lpath.with_name("factory_ledger.sha256").read_bytes())
    assert head == {"hash": events[-1].hash, "seq": 5}
    res = Ledger(lpath, at(0)).verify()
    assert res.ok and res.lines == 5 and res.head.hash == events[-1].hash and res.head_file == "ok"


def test_ts_utc_never_decreases_when_the_clock_goes_back(lpath: Path) -> None:
    with Ledger(lpath, at(10), fsync=False) as led:
        a = led.append("run.started", "r", "s", {})
        led.clock = at(5)
        b = led.append("run.finished", "r", "s", {})
        led.clock = at(20)
        c = led.append("run.finished", "r", "s", {})
    assert a.ts_utc == b.ts_utc == format_ts(T0 + dt.timedelta(seconds=10))
    assert c.ts_utc == format_ts(T0 + dt.timedelta(seconds=20))
    assert Ledger(lpath, at(0)).verify().ok


def test_a_second_ledger_object_continues_the_chain(lpath: Path) -> None:
    """The head is read from the end of the file, so separate writers share one chain."""
    build(lpath, 3)
    with Ledger(lpath, at(100), fsync=True) as led:
        ev = led.append("ledger.note", "", "x", {})
    assert ev.seq == 4
    assert Ledger(lpath, at(0)).verify().ok


@pytest.mark.parametrize(
    ("etype", "run_id", "stage", "payload", "what"),
    [
        ("Run.Started", "r", "s", {}, "event type"),
        ("nodots", "r", "s", {}, "event type"),
        ("run.started", "../x", "s", {}, "run_id"),
        ("run.started", "r", "a b", {}, "stage"),
        ("run.started", "r", "s", ["not", "an", "object"], "payload"),
    ],
)
def test_append_rejects_bad_fields_and_writes_nothing(
    lpath: Path, etype: str, run_id: str, stage: str, payload: object, what: str
) -> None:
    build(lpath, 2)
    before = lpath.read_bytes()
    with Ledger(lpath, at(0)) as led, pytest.raises(UsageError, match=what):
        led.append(etype, run_id, stage, payload)  # type: ignore[arg-type]
    assert lpath.read_bytes() == before


# -- torn tail --------------------------------------------------------------------------------

TORN = b'{"event_type":"run.started","hash":"ab'


def test_append_refuses_on_a_torn_tail_and_names_repair(lpath: Path) -> None:
    build(lpath, 3)
    with open(lpath, "ab") as fh:
        fh.write(TORN)
    before = lpath.read_bytes()
    with Ledger(lpath, at(50)) as led, pytest.raises(TornTailError, match=r"ledger repair") as exc:
        led.append("ledger.note", "", "x", {})
    assert f"{len(TORN)} bytes" in str(exc.value)
    assert lpath.read_bytes() == before


def test_verify_reports_a_torn_tail_at_the_next_seq(lpath: Path) -> None:
    build(lpath, 3)
    with open(lpath, "ab") as fh:
        fh.write(TORN)
    res = Ledger(lpath, at(0)).verify()
    assert not res.ok
    assert res.torn_tail and res.torn_bytes == len(TORN)
    assert res.first_bad_seq == 4 and res.lines == 3
    assert "ledger repair" in res.reason
    assert res.head_file == "ok"  # the head file was written after line 3, before the crash


def test_a_damaged_final_newline_is_a_torn_tail_at_the_last_seq(lpath: Path) -> None:
    events = build(lpath, 4)
    raw = lpath.read_bytes()
    last = raw.splitlines(keepends=True)[-1]
    lpath.write_bytes(raw[:-1] + b"X")
    with Ledger(lpath, at(0)) as led:
        res = led.verify()
        assert not res.ok and res.torn_tail and res.first_bad_seq == 4 and res.lines == 3
        assert res.torn_bytes == len(last)
        # Both diagnoses are given: the torn tail (with its remedy) and the head file's seq.
        assert res.reason.startswith("torn tail") and "ledger repair" in res.reason
        assert "shorter than its head file" in res.reason
        out = led.repair()  # moves the damaged line aside; nothing is lost
        assert out["repaired"] and out["seq"] == 4
        assert side_files(lpath)[0].read_bytes() == last[:-1] + b"X"
        assert led.verify().ok
    assert events[-1].hash.encode() in side_files(lpath)[0].read_bytes()


def test_repair_moves_exactly_the_torn_bytes_aside_and_records_it(lpath: Path) -> None:
    events = build(lpath, 4)
    sound = lpath.read_bytes()
    with open(lpath, "ab") as fh:
        fh.write(TORN)
    with Ledger(lpath, at(60)) as led:
        out = led.repair()
    assert out["repaired"] is True and out["torn_bytes"] == len(TORN) and out["seq"] == 5
    [side] = side_files(lpath)
    assert side.name == out["side_file"]
    assert side.name == "factory_ledger.jsonl.torn-" + (T0 + dt.timedelta(seconds=60)).strftime(
        "%Y%m%dT%H%M%S%fZ"
    )
    assert side.read_bytes() == TORN
    data = lpath.read_bytes()
    assert data.startswith(sound)  # nothing before the fragment changed
    rec = Event.from_line(data[len(sound) :].rstrip(b"\n"))
    assert rec.event_type == "ledger.repaired" and rec.seq == 5 and rec.prev_hash == events[-1].hash
    assert rec.payload["side_file"] == side.name
    assert rec.payload["torn_bytes"] == len(TORN)
    assert rec.payload["torn_sha256"] == hashlib.sha256(TORN).hexdigest()
    with Ledger(lpath, at(70)) as led:
        assert led.verify().ok
        assert led.append("ledger.note", "", "x", {}).seq == 6  # appends work again
        assert led.verify().ok


def test_repair_never_overwrites_an_earlier_side_file(lpath: Path) -> None:
    build(lpath, 2)
    for frag in (b"first", b"second-fragment"):
        with open(lpath, "ab") as fh:
            fh.write(frag)
        with Ledger(lpath, at(0)) as led:  # same pinned clock: same stamp
            assert led.repair()["repaired"] is True
    sides = side_files(lpath)
    assert len(sides) == 2
    assert sorted(p.read_bytes() for p in sides) == [b"first", b"second-fragment"]
    assert Ledger(lpath, at(0)).verify().ok


def test_repair_of_a_ledger_that_is_only_a_fragment(lpath: Path) -> None:
    lpath.parent.mkdir(parents=True)
    lpath.write_bytes(TORN)
    with Ledger(lpath, at(0)) as led:
        out = led.repair()
        assert out["repaired"] and out["seq"] == 1
        assert led.verify().ok
    assert side_files(lpath)[0].read_bytes() == TORN


def test_repair_on_a_sound_ledger_changes_nothing(lpath: Path) -> None:
    build(lpath, 3)
    before = lpath.read_bytes()
    with Ledger(lpath, at(0)) as led:
        assert led.repair() == {"repaired": False, "reason": "no torn tail"}
    assert lpath.read_bytes() == before
    assert side_files(lpath) == []


@pytest.mark.parametrize("bad", [b"not json at all", b'{"seq":2}', b""])
def test_a_terminated_bad_line_is_corruption_not_a_torn_tail(lpath: Path, bad: bytes) -> None:
    build(lpath, 4)
    lines = lpath.read_bytes().splitlines(keepends=True)
    lines[1] = bad + b"\n"
    lpath.write_bytes(b"".join(lines))
    before = lpath.read_bytes()
    with Ledger(lpath, at(0)) as led:
        res = led.verify()
        assert not res.ok and not res.torn_tail
        assert res.first_bad_seq == 2
        with pytest.raises(LedgerCorruptError, match=r"seq 2: .*not repaired automatically"):
            led.repair()
    assert lpath.read_bytes() == before
    assert side_files(lpath) == []


def test_repair_refuses_a_torn_tail_after_corruption(lpath: Path) -> None:
    build(lpath, 4)
    lines = lpath.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"status":"PASS"', b'"status":"FAIL"')
    lpath.write_bytes(b"".join(lines) + TORN)
    before = lpath.read_bytes()
    with Ledger(lpath, at(0)) as led:
        res = led.verify()
        assert not res.ok and res.first_bad_seq == 3 and "edited" in res.reason
        with pytest.raises(LedgerCorruptError, match=r"seq 3: .*corrupt before its torn tail"):
            led.repair()
    assert lpath.read_bytes() == before
    assert side_files(lpath) == []


# -- CRLF -------------------------------------------------------------------------------------


def test_readers_accept_crlf_line_ends_but_verify_names_them(lpath: Path) -> None:
    """Readers are lenient (a checkout that rewrote line ends stays readable), but a CR is a
    byte the hash does not cover, so verify reports the first line that has one."""
    events = build(lpath, 6)
    lpath.write_bytes(lpath.read_bytes().replace(b"\n", b"\r\n"))
    with Ledger(lpath, at(100), fsync=False) as led:
        res = led.verify()
        assert not res.ok and res.first_bad_seq == 1 and res.lines == 0
        assert res.reason.startswith("line ends with CR")
        assert led.select(Filter(), None) == sorted(events, key=Event.sort_key)
        assert led.select(Filter(), 2) == sorted(events, key=Event.sort_key)[-2:]
        assert led.select(Filter(run_id="run_1"), 1) == [events[4]]
        ev = led.append("ledger.note", "", "x", {})  # the head is read through the \r
        assert ev.seq == 7 and ev.prev_hash == events[-1].hash
        assert led.verify().first_bad_seq == 1
    assert lpath.read_bytes().endswith(b"}\n") and not lpath.read_bytes().endswith(b"\r\n")


# -- head file ----------------------------------------------------------------------------------


def test_cutting_the_last_line_is_caught_by_the_head_file(lpath: Path) -> None:
    build(lpath, 5)
    lines = lpath.read_bytes().splitlines(keepends=True)
    lpath.write_bytes(b"".join(lines[:-1]))
    res = Ledger(lpath, at(0)).verify()
    assert not res.ok
    assert res.first_bad_seq == 5
    assert "shorter than its head file" in res.reason
    assert res.head_file == "ahead"


def test_head_file_behind_is_a_note_not_a_failure(lpath: Path) -> None:
    """A crash between the line's write and the head update leaves the head one behind."""
    events = build(lpath, 5)
    head = lpath.with_name("factory_ledger.sha256")
    head.write_bytes(jsonio.canonical({"hash": events[3].hash, "seq": 4}) + b"\n")
    res = Ledger(lpath, at(0)).verify()
    assert res.ok and res.head_file == "behind"
    assert any("head file is at seq 4" in n for n in res.notes)
    with Ledger(lpath, at(10)) as led:
        led.append("ledger.note", "", "x", {})
    assert orjson.loads(head.read_bytes())["seq"] == 6
    assert Ledger(lpath, at(0)).verify().head_file == "ok"


def test_head_file_with_another_hash_fails(lpath: Path) -> None:
    build(lpath, 3)
    head = lpath.with_name("factory_ledger.sha256")
    head.write_bytes(jsonio.canonical({"hash": "e" * 64, "seq": 3}) + b"\n")
    res = Ledger(lpath, at(0)).verify()
    assert not res.ok and res.first_bad_seq == 3 and res.head_file == "mismatch"


def test_absent_head_file_fails_unless_accepted_and_is_rewritten(lpath: Path) -> None:
    build(lpath, 3)
    head = lpath.with_name("factory_ledger.sha256")
    head.unlink()
    res = Ledger(lpath, at(0)).verify()
    assert not res.ok and res.head_file == "absent" and res.first_bad_seq == 4
    assert "head file factory_ledger.sha256 is missing" in res.reason and "--no-head" in res.reason
    res = Ledger(lpath, at(0)).verify(require_head=False)
    assert res.ok and res.head_file == "absent" and res.notes
    with Ledger(lpath, at(10)) as led:
        led.append("ledger.note", "", "x", {})
    assert orjson.loads(head.read_bytes())["seq"] == 4


def test_missing_and_empty_ledgers_verify_as_empty(lpath: Path) -> None:
    res = Ledger(lpath, at(0)).verify()
    assert res.ok and res.lines == 0 and res.head.hash == GENESIS
    lpath.parent.mkdir(parents=True)
    lpath.write_bytes(b"")
    assert Ledger(lpath, at(0)).verify().ok
    assert Ledger(lpath, at(0)).select(Filter(), 5) == []


# -- filters ----------------------------------------------------------------------------------


def test_filters_match_payload_fields_and_since(lpath: Path) -> None:
    with Ledger(lpath, at(0), fsync=False) as led:
        led.append(
            "stage.finished",
            "r1",
            "integrate",
            {"status": "PASS", "rc": 0, "actor": "Z_integrator", "kind": "factory"},
        )
        led.clock = at(10)
        led.append(
            "stage.finished",
            "r2",
            "integrate",
            {"status": "blocked", "rc": 3, "actor": "A_worker", "kind": "nightly"},
        )
        led.clock = at(20)
        led.append("run.finished", "r2", "summary", {"status": "BLOCKED"})

        def seqs(**kw: object) -> list[int]:
            return [e.seq for e in led.select(Filter.build(**kw), None)]  # type: ignore[arg-type]

        assert seqs(status="blocked") == [2, 3]  # case-insensitive
        assert seqs(rc=0) == [1]
        assert seqs(actor="A_worker") == [2]
        assert seqs(kind="nightly") == [2]
        assert seqs(event_type="stage.*") == [1, 2]
        assert seqs(run_id="r2", event_type="run.finished") == [3]
        assert seqs(since="2026-11-21T20:15:10Z") == [2, 3]
        assert seqs(since="2026-11-21T21:15:10+01:00") == [2, 3]  # offsets are converted
        with pytest.raises(UsageError, match=r"^since: 'yesterday' is not") as exc:
            Filter.build(since="yesterday")  # the CLI shows its option (--since) in its place
        assert "--" not in str(exc.value)


# -- ts_utc has one stored form --------------------------------------------------------------


def _write_chain(lpath: Path, stamps: list[str]) -> None:
    """A ledger whose hashes and links are sound, with the given ts_utc strings verbatim."""
    from tools.codex.factory.ledger.store import encode

    prev, lines = GENESIS, []
    for seq, ts in enumerate(stamps, 1):
        body = {
            "event_type": "ledger.note",
            "payload": {},
            "prev_hash": prev,
            "run_id": "",
            "seq": seq,
            "stage": "t",
            "ts_utc": ts,
        }
        line, prev = encode(body)
        lines.append(line)
    lpath.parent.mkdir(parents=True, exist_ok=True)
    lpath.write_bytes(b"".join(lines))


GOOD_TS = "2026-11-21T20:15:00.000000Z"
BAD_TS = [
    "999-01-01T00:00:00.000000Z",  # the 3-digit year a --now 0999 used to write: sorts after 2026
    "2026-11-21T20:15:00Z",  # no microseconds
    "2026-11-21T20:15:00.000000+00:00",  # an offset, not Z
    "2026-13-01T00:00:00.000000Z",  # month 13: right width, not a time
    "2026-11-21 20:15:00.000000Z",  # space, not T
    "9999-99-99T99:99:99.999999Z",
]


@pytest.mark.parametrize("bad", BAD_TS)
@pytest.mark.parametrize("where", [0, 10, 29])
def test_verify_flags_a_ts_utc_not_in_the_stored_form(lpath: Path, bad: str, where: int) -> None:
    stamps = [GOOD_TS] * 30
    stamps[where] = bad
    if bad.startswith(("999", "9999")):
        stamps[where + 1 :] = [bad] * (29 - where)  # what clamping to max(now, last ts) did
    _write_chain(lpath, stamps)
    res = Ledger(lpath, at(0)).verify()
    assert not res.ok and res.first_bad_seq == where + 1, res
    assert "ts_utc" in res.reason


def test_append_refuses_to_carry_a_malformed_last_ts_on(lpath: Path) -> None:
    _write_chain(lpath, [GOOD_TS, "999-01-01T00:00:00.000000Z"])
    size = lpath.stat().st_size
    with pytest.raises(LedgerCorruptError, match=r"seq 2: ts_utc '999-01-01T00:00:00\.000000Z'"):
        Ledger(lpath, at(0), fsync=False).append("ledger.note", "", "t", {})
    assert lpath.stat().st_size == size


def test_a_pinned_clock_before_1000_cannot_reach_the_ledger(lpath: Path) -> None:
    with pytest.raises(UsageError, match=r"1970\.\.9999"):
        Ledger(lpath, Clock.from_env("0999-01-01T00:00:00Z"), fsync=False)
    assert not lpath.exists()


# -- a ledger, head or lock path that is not a file: one line naming it ----------------------


def _all_ops(led: Ledger) -> dict[str, object]:
    return {
        "append": lambda: led.append("ledger.note", "", "t", {}),
        "verify": led.verify,
        "select": lambda: led.select(Filter()),
        "tail": lambda: led.select(Filter(), 5),
        "events": lambda: list(led.events()),
        "read_head": led.read_head,
        "repair": led.repair,
        "run_ids_since": lambda: led.run_ids_since("run.started", GOOD_TS),
    }


@pytest.mark.parametrize(
    "op", ["append", "verify", "select", "tail", "events", "read_head", "repair", "run_ids_since"]
)
@pytest.mark.parametrize("shape", ["runs-is-a-file", "ledger-is-a-dir"])
def test_a_ledger_path_of_the_wrong_shape_is_a_usage_error_naming_it(
    tmp_path: Path, op: str, shape: str
) -> None:
    runs = tmp_path / "runs"
    if shape == "runs-is-a-file":
        runs.write_bytes(b"user data\n")
    else:
        (runs / "factory_ledger.jsonl").mkdir(parents=True)
    lpath = runs / "factory_ledger.jsonl"
    with Ledger(lpath, at(0), fsync=False) as led:
        fn = _all_ops(led)[op]
        with pytest.raises(UsageError) as exc:
            fn()  # type: ignore[operator]
    msg = str(exc.value)
    assert "\n" not in msg and str(runs) in msg and "ledger.path" in msg, msg
    if shape == "runs-is-a-file":
        assert runs.read_bytes() == b"user data\n"


@pytest.mark.parametrize("which", ["head", "lock"])
def test_a_head_or_lock_file_that_is_a_directory_is_a_usage_error(lpath: Path, which: str) -> None:
    build(lpath, 3)
    target = (
        lpath.with_name("factory_ledger.sha256")
        if which == "head"
        else lpath.with_name(lpath.name + ".lock")
    )
    target.unlink()
    target.mkdir()
    with Ledger(lpath, at(0), fsync=False) as led:
        with pytest.raises(UsageError, match=target.name):
            led.append("ledger.note", "", "t", {})
        if which == "head":
            with pytest.raises(UsageError, match=target.name):
                led.verify()
        else:
            with pytest.raises(UsageError, match=target.name), led.lock():
                pass
            with pytest.raises(UsageError, match=target.name):
                led.repair()


@pytest.mark.parametrize("shape", ["runs-is-a-file", "ledger-is-a-dir", "head-is-a-dir"])
def test_cli_reports_a_misshapen_ledger_in_one_line(tmp_path: Path, shape: str) -> None:
    from tests.support.repos import make_repo, run_cli

    repo = make_repo(tmp_path / "repo")
    runs = repo / "tools" / "codex" / "runs"
    if shape == "runs-is-a-file":
        runs.parent.mkdir(parents=True)
        runs.write_bytes(b"x")
    elif shape == "ledger-is-a-dir":
        (runs / "factory_ledger.jsonl").mkdir(parents=True)
    else:
        build(runs / "factory_ledger.jsonl", 2)
        (runs / "factory_ledger.sha256").unlink()
        (runs / "factory_ledger.sha256").mkdir()
    listing = 0 if shape == "head-is-a-dir" else 2  # listing never reads the head file
    for args, code in (
        (["ledger"], listing),
        (["ledger", "--limit", "3"], listing),
        (["ledger", "verify"], 2),
        (["ledger", "repair"], 2),
        (["preflight"], 3),
        (["doctor"], None),
    ):
        res = run_cli("--repo", str(repo), *args)
        assert "internal error" not in res.stderr and "Traceback" not in res.stderr, (
            args,
            res.stderr,
        )
        if code is not None:
            assert res.returncode == code, (args, res.returncode, res.stdout, res.stderr)
        if code == 2:
            assert len(res.stderr.strip().splitlines()) == 1, res.stderr
