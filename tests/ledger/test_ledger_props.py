"""Property tests for the ledger: tamper detection, tail == last N of the sorted list,
canonical serialisation.

The tamper properties build one real ledger per test function (real appends, real head
file) and copy its bytes per example into a scratch directory, then run ``Ledger.verify``
on the damaged copy.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tools.codex.factory.errors import LedgerCorruptError
from tools.codex.factory.infra import jsonio
from tools.codex.factory.infra.clock import Clock, format_ts, parse_instant
from tools.codex.factory.ledger import store as ledger_mod
from tools.codex.factory.ledger.store import GENESIS, Event, Filter, Ledger, encode, line_hash_ok

BASE = parse_instant("2026-11-21T20:15:00Z")
N_EVENTS = 24

# Payloads that try to confuse a byte-level reader: member names that also occur at the
# top level, quotes, backslashes, non-ASCII, floats, nesting.
PAYLOADS: list[dict[str, Any]] = [
    {"actor": "operator", "status": "PASS", "rc": 0},
    {"hash": "f" * 64, "prev_hash": GENESIS, "seq": 99, "ts_utc": "9999"},
    {"note": '"hash":"' + "0" * 64 + '",', "path": "C:\\x\\y", "q": '"quoted"'},
    {"text": "naïve — ✓ 日本", "nested": {"a": [1, 2.5, None, True], "z": {}}},
    {"empty": "", "list": [], "big": 2**62, "neg": -17, "f": 1e-7},
    {},
]
EVENT_TYPES = ["run.started", "stage.started", "stage.finished", "ledger.note", "run.finished"]


@pytest.fixture(scope="module")
def base_ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A real ledger of N_EVENTS appends (built once): (ledger bytes, head file bytes)."""
    d = tmp_path_factory.mktemp("base")
    path = d / "factory_ledger.jsonl"
    with Ledger(path, Clock(BASE), fsync=False) as led:
        for i in range(N_EVENTS):
            # Some equal, some increasing instants; one going backwards (clamped).
            led.clock = Clock(BASE + dt.timedelta(seconds=(i // 3) if i != 10 else 0))
            led.append(
                EVENT_TYPES[i % len(EVENT_TYPES)],
                f"run_{i % 3}",
                f"stage{i % 4}",
                PAYLOADS[i % len(PAYLOADS)],
            )
    data = path.read_bytes()
    head = (d / "factory_ledger.sha256").read_bytes()
    assert data.count(b"\n") == N_EVENTS
    assert Ledger(path, Clock(BASE)).verify().ok
    return data, head


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scratch")


def verify_bytes(scratch: Path, data: bytes, head: bytes) -> ledger_mod.VerifyResult:
    path = scratch / "factory_ledger.jsonl"
    path.write_bytes(data)
    (scratch / "factory_ledger.sha256").write_bytes(head)
    with Ledger(path, Clock(BASE)) as led:
        return led.verify()


def split_lines(data: bytes) -> list[bytes]:
    """Lines with their ``\\n``."""
    return data.splitlines(keepends=True)


def expected_for_edit(data: bytes, offset: int) -> tuple[int, bool]:
    """(first bad seq, torn?) for a one-byte replacement at ``offset``.

    Every byte of line k except its stored hash value is hashed, and the stored hash is
    compared, so an edit anywhere in line k is caught at k; a newline turned into another
    byte merges line k with k+1 (still caught at k, by its hash), except the final newline,
    which leaves an unterminated last line: a torn tail at the last seq.
    """
    k = data.count(b"\n", 0, offset) + 1
    torn = offset == len(data) - 1
    return k, torn


def test_base_ledger_is_sound(base_ledger: tuple[bytes, bytes], scratch: Path) -> None:
    data, head = base_ledger
    res = verify_bytes(scratch, data, head)
    assert res.ok and res.lines == N_EVENTS and res.head_file == "ok"
    assert res.first_bad_seq is None and res.reason == ""


@given(st.data())
@settings(max_examples=300)
def test_any_single_byte_edit_is_caught_at_its_line(
    base_ledger: tuple[bytes, bytes], scratch: Path, data: st.DataObject
) -> None:
    raw, head = base_ledger
    offset = data.draw(st.integers(0, len(raw) - 1), label="offset")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[offset]), label="byte")
    damaged = raw[:offset] + bytes([new]) + raw[offset + 1 :]
    res = verify_bytes(scratch, damaged, head)
    k, torn = expected_for_edit(raw, offset)
    assert not res.ok, (offset, new)
    assert res.first_bad_seq == k, (offset, new, res.reason)
    assert res.torn_tail is torn
    if torn:
        assert k == N_EVENTS
        assert res.torn_bytes == len(split_lines(raw)[-1])
        assert res.reason.startswith("torn tail") and "ledger repair" in res.reason
        assert "shorter than its head file" in res.reason  # the head file saw the full line


def test_every_offset_with_a_flipped_bit_or_newline_is_caught(
    base_ledger: tuple[bytes, bytes], scratch: Path
) -> None:
    """Exhaustive over offsets for two replacement kinds (the hypothesis test samples
    arbitrary bytes): the one damaged byte is patched in place and put back each time."""
    raw, head = base_ledger
    path = scratch / "factory_ledger.jsonl"
    path.write_bytes(raw)
    (scratch / "factory_ledger.sha256").write_bytes(head)
    misses = []
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        with Ledger(path, Clock(BASE)) as led:
            for offset in range(len(raw)):
                for new in {raw[offset] ^ 0x01, ord("\n")} - {raw[offset]}:
                    os.lseek(fd, offset, os.SEEK_SET)
                    os.write(fd, bytes([new]))
                    res = led.verify()
                    os.lseek(fd, offset, os.SEEK_SET)
                    os.write(fd, raw[offset : offset + 1])
                    k, torn = expected_for_edit(raw, offset)
                    if res.ok or res.first_bad_seq != k or res.torn_tail is not torn:
                        misses.append((offset, new, res.first_bad_seq, k))
    finally:
        os.close(fd)
    assert path.read_bytes() == raw
    assert misses == []


@given(k=st.integers(1, N_EVENTS))
def test_deleted_line_is_caught_at_its_seq(
    base_ledger: tuple[bytes, bytes], scratch: Path, k: int
) -> None:
    raw, head = base_ledger
    lines = split_lines(raw)
    del lines[k - 1]
    res = verify_bytes(scratch, b"".join(lines), head)
    assert not res.ok
    assert res.first_bad_seq == k
    if k == N_EVENTS:
        # Nothing in the chain is wrong: only the head file shows the cut.
        assert "shorter than its head file" in res.reason
        assert res.head_file == "ahead"
    else:
        assert "prev_hash" in res.reason


@given(k=st.integers(1, N_EVENTS - 1))
def test_swapped_adjacent_lines_are_caught_at_the_first(
    base_ledger: tuple[bytes, bytes], scratch: Path, k: int
) -> None:
    raw, head = base_ledger
    lines = split_lines(raw)
    lines[k - 1], lines[k] = lines[k], lines[k - 1]
    res = verify_bytes(scratch, b"".join(lines), head)
    assert not res.ok
    assert res.first_bad_seq == k
    assert "prev_hash" in res.reason


@given(k=st.integers(1, N_EVENTS))
def test_duplicated_line_is_caught_after_the_original(
    base_ledger: tuple[bytes, bytes], scratch: Path, k: int
) -> None:
    raw, head = base_ledger
    lines = split_lines(raw)
    lines.insert(k, lines[k - 1])
    res = verify_bytes(scratch, b"".join(lines), head)
    assert not res.ok
    assert res.first_bad_seq == k + 1
    assert res.lines == k  # the chain is sound up to the original


# -- tail == last N of the fully sorted list ----------------------------------------------

RUN_IDS = ["", "run_a", "run_b", "run_c"]
TYPES = ["run.started", "stage.started", "stage.finished", "ledger.note", "a.b"]

event_spec = st.tuples(
    st.integers(0, 6),  # clock offset in µs steps: repeats and backwards moves are common
    st.sampled_from(TYPES),
    st.sampled_from(RUN_IDS),
)
filters = st.builds(
    Filter,
    run_id=st.none() | st.sampled_from(RUN_IDS),
    event_type=st.none() | st.sampled_from([*TYPES, "stage.*", "nothing.matches"]),
)


@pytest.fixture(scope="module")
def select_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("select")


def _counter() -> Iterator[int]:
    n = 0
    while True:
        n += 1
        yield n


_NAMES = _counter()


@given(
    specs=st.lists(event_spec, min_size=0, max_size=60),
    flt=filters,
    limit=st.integers(1, 70),
    block=st.sampled_from([1, 2, 7, 64, 301, ledger_mod.BLOCK]),
    unit=st.sampled_from([dt.timedelta(microseconds=1), dt.timedelta(seconds=1), dt.timedelta(0)]),
)
@example(specs=[(0, "a.b", "")] * 5, flt=Filter(), limit=2, block=1, unit=dt.timedelta(0))
def test_tail_equals_last_n_of_sorted_list(
    select_dir: Path,
    specs: list[tuple[int, str, str]],
    flt: Filter,
    limit: int,
    block: int,
    unit: dt.timedelta,
) -> None:
    path = select_dir / f"l{next(_NAMES)}" / "factory_ledger.jsonl"
    with Ledger(path, Clock(BASE), fsync=False) as led:
        last = ""
        for i, (off, etype, run_id) in enumerate(specs):
            led.clock = Clock(BASE + off * unit)
            ev = led.append(etype, run_id, "s", {"i": i})
            assert ev.ts_utc == max(format_ts(BASE + off * unit), last)  # never decreasing
            last = ev.ts_utc
        full = led.select(flt, None)
        assert full == sorted((e for e in led.events() if flt.matches(e)), key=Event.sort_key)
        saved = ledger_mod.BLOCK
        ledger_mod.BLOCK = block  # a small read block exercises lines split across blocks
        try:
            tail = led.select(flt, limit)
        finally:
            ledger_mod.BLOCK = saved
    assert tail == full[-limit:]


@given(
    specs=st.lists(event_spec, min_size=1, max_size=30),
    limit=st.integers(1, 40),
    torn=st.binary(min_size=1, max_size=200).filter(lambda b: b"\n" not in b),
    block=st.sampled_from([1, 3, 50, ledger_mod.BLOCK]),
)
def test_tail_ignores_a_torn_fragment_of_any_length(
    select_dir: Path, specs: list[tuple[int, str, str]], limit: int, torn: bytes, block: int
) -> None:
    """The unterminated piece after the last newline is never read as an event, even when
    it is longer than one read block."""
    path = select_dir / f"t{next(_NAMES)}" / "factory_ledger.jsonl"
    with Ledger(path, Clock(BASE), fsync=False) as led:
        for i, (off, etype, run_id) in enumerate(specs):
            led.clock = Clock(BASE + dt.timedelta(seconds=off))
            led.append(etype, run_id, "s", {"i": i})
        full = led.select(Filter(), None)
        with open(path, "ab") as fh:
            fh.write(torn)
        saved = ledger_mod.BLOCK
        ledger_mod.BLOCK = block
        try:
            tail = led.select(Filter(), limit)
        finally:
            ledger_mod.BLOCK = saved
        assert led.select(Filter(), None) == full
    assert tail == full[-limit:]


def test_tail_reads_only_the_end_of_a_large_ledger(tmp_path: Path) -> None:
    """With a limit, lines before the oldest held timestamp are never parsed: a corrupt
    line early in the file does not disturb ``--limit`` (it reads from the end)."""
    path = tmp_path / "factory_ledger.jsonl"
    with Ledger(path, Clock(BASE), fsync=False) as led:
        for i in range(300):
            led.clock = Clock(BASE + dt.timedelta(seconds=i))
            led.append("ledger.note", "r", "s", {"i": i})
    lines = split_lines(path.read_bytes())
    lines[5] = b"this is not json\n"
    path.write_bytes(b"".join(lines))
    with Ledger(path, Clock(BASE)) as led:
        tail = led.select(Filter(), 3)
        assert [e.payload["i"] for e in tail] == [297, 298, 299]
        with pytest.raises(LedgerCorruptError, match="line 6"):
            led.select(Filter(), None)


# -- canonical serialisation ----------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(st.characters(codec="utf-8"), max_size=20)
)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda kids: (
        st.lists(kids, max_size=5)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=8), kids, max_size=5)
    ),
    max_leaves=25,
)
json_values_no_float = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=5)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=8), kids, max_size=5)
    ),
    max_leaves=25,
)


def _keys_sorted(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert keys == sorted(keys), keys
    return dict(pairs)


@given(json_values)
def test_canonical_round_trips_byte_for_byte(value: Any) -> None:
    once = jsonio.canonical(value)
    again = jsonio.canonical(orjson.loads(once))
    assert again == once
    once.decode("utf-8")  # valid UTF-8
    json.loads(once, object_pairs_hook=_keys_sorted)  # keys sorted at every level


@given(json_values_no_float)
def test_canonical_has_no_spaces_and_sorted_keys(value: Any) -> None:
    """Without floats (whose spelling differs between encoders) canonical equals the
    reference compact form: sorted keys, ',' and ':' separators, raw UTF-8."""
    ref = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )
    assert jsonio.canonical(value) == ref


@given(
    payload=st.dictionaries(st.text(max_size=8), json_values, max_size=6),
    etype=st.sampled_from(TYPES),
    run_id=st.sampled_from(RUN_IDS),
    seq=st.integers(1, 10**9),
)
def test_encoded_line_round_trips_and_hash_covers_the_body(
    payload: dict[str, Any], etype: str, run_id: str, seq: int
) -> None:
    body = {
        "event_type": etype,
        "payload": payload,
        "prev_hash": GENESIS,
        "run_id": run_id,
        "seq": seq,
        "stage": "s",
        "ts_utc": format_ts(BASE),
    }
    line, digest = encode(body)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    # The stored line is exactly the canonical form of the whole event, hash included.
    assert line[:-1] == jsonio.canonical({**body, "hash": digest})
    assert line_hash_ok(line[:-1])
    ev = Event.from_line(line[:-1])
    assert ev.as_dict() == {**body, "hash": digest}
    assert jsonio.canonical(ev.as_dict()) == line[:-1]


# -- verify's block fast path agrees with its line-by-line definition -------------------------

FRAGMENTS = [
    b"\n",
    b'"',
    b"\r",
    b'"hash":"' + b"a" * 64 + b'",',
    b'"prev_hash":"'
    + b"0" * 64
    + b'","run_id":"r","seq":1,"stage":"s","ts_utc":"2026-11-21T20:15:00.000000Z"}\n',
    b'{"event_type":"x.y","hash":"' + b"b" * 64 + b'",',
    b',"seq":7,',
    b'"ts_utc":"',
]


@pytest.fixture(scope="module")
def base_block(base_ledger: tuple[bytes, bytes]) -> bytes:
    return base_ledger[0]


def _slow(body: bytes) -> tuple[int, bytes, bytes, int | None]:
    lines = body.split(b"\n")
    lines.pop()
    seq, prev, ts, bad, _ = ledger_mod._check_lines(lines, 0, GENESIS.encode(), b"")
    return seq, prev, ts, bad


def _fast(body: bytes) -> tuple[int, bytes, bytes] | None:
    return ledger_mod._fast_block(body, 0, GENESIS.encode(), b"")


def test_fast_path_takes_canonical_blocks_and_agrees(base_block: bytes) -> None:
    fast = _fast(base_block)
    assert fast is not None  # tricky payloads (hash/prev_hash/seq keys) stay on the fast path
    seq, prev, ts, bad = _slow(base_block)
    assert bad is None and fast == (seq, prev, ts) and seq == N_EVENTS
    crlf = base_block.replace(b"\n", b"\r\n")  # a CR is not the stored form: line 1 is bad
    assert _fast(crlf) is None and _slow(crlf) == (0, GENESIS.encode(), b"", 1)


@given(st.data())
@settings(max_examples=400)
def test_fast_path_never_accepts_what_the_line_check_rejects(
    base_block: bytes, data: st.DataObject
) -> None:
    body = base_block
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        kind = data.draw(st.sampled_from(["byte", "insert", "delete"]), label="kind")
        at = data.draw(st.integers(0, len(body) - 1), label="at")
        if kind == "byte":
            body = body[:at] + bytes([data.draw(st.integers(0, 255), label="b")]) + body[at + 1 :]
        elif kind == "insert":
            body = body[:at] + data.draw(st.sampled_from(FRAGMENTS), label="frag") + body[at:]
        else:
            body = body[:at] + body[at + data.draw(st.integers(1, 80), label="len") :]
    body = body[: body.rfind(b"\n") + 1]
    fast = _fast(body)
    seq, prev, ts, bad = _slow(body)
    if fast is not None:
        assert bad is None, (bad, body)
        assert fast == (seq, prev, ts)


def test_valid_lines_the_fast_path_declines_still_verify(tmp_path: Path) -> None:
    """Hash-correct lines that are not in the writer's exact shape (a quote or newline
    escaped inside run_id or stage) go through the line-by-line check and pass."""
    path = tmp_path / "factory_ledger.jsonl"
    prev = GENESIS
    lines = []
    for seq, run_id in enumerate(["plain", 'with"quote', "new\nline", "back\\slash", "plain"], 1):
        line, prev = encode(
            {
                "event_type": "ledger.note",
                "payload": {},
                "prev_hash": prev,
                "run_id": run_id,
                "seq": seq,
                "stage": 's"x' if seq == 2 else "s",
                "ts_utc": format_ts(BASE),
            }
        )
        lines.append(line)
    data = b"".join(lines)
    assert _fast(data) is None
    path.write_bytes(data)
    res = Ledger(path, Clock(BASE)).verify(require_head=False)  # no head file written here
    assert res.ok and res.lines == 5 and res.head.hash == prev
