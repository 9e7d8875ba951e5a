"""Run IDs (DESIGN §3): hostile IDs are refused; generated IDs are deterministic."""

from __future__ import annotations

import hashlib

import pytest

from tools.codex.factory import ids
from tools.codex.factory.clock import Clock, compact, format_ts, parse_instant
from tools.codex.factory.errors import UsageError

from .conftest import PINNED

COMMIT = "3f786850e387550fdab836ed7e6dc881de23001b"

HOSTILE = [
    "../x",
    "a/b",
    "C:\\x",
    "",
    "a" * 200,
    "a" * 129,
    "run\x00id",
    ".",
    "..",
    "a..b",
    "-leading-dash",
    "_leading",
    ".hidden",
    "with space",
    "tab\tid",
    "new\nline",
    "back\\slash",
    "C:x",
    "/abs",
    "naïve",
]


@pytest.mark.parametrize("bad", HOSTILE, ids=[repr(h)[:30] for h in HOSTILE])
def test_hostile_run_ids_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError, match="--run-id"):
        ids.validate_run_id(bad)


@pytest.mark.parametrize(
    "good",
    [
        "factory_20261121_201500_1a2b3c4d_001",
        "a",
        "Z",
        "9",
        "run-1.2_x",
        "a" * 128,
        "x.y",
    ],
)
def test_normal_run_ids_are_accepted(good: str) -> None:
    assert ids.validate_run_id(good) == good


def test_the_error_names_the_source() -> None:
    with pytest.raises(UsageError, match=r"^RUN_MANIFEST\.json run_id: "):
        ids.validate_run_id("../x", "RUN_MANIFEST.json run_id")


def test_prefix_and_id_are_deterministic_for_kind_clock_and_commit() -> None:
    now = Clock.from_env(PINNED).now()
    prefix = ids.run_id_prefix("factory", now, COMMIT)
    assert prefix == "factory_20261121_201500_" + hashlib.sha256(COMMIT.encode()).hexdigest()[:8] + "_"
    assert ids.run_id_prefix("factory", Clock.from_env(PINNED).now(), COMMIT) == prefix
    assert ids.make_run_id(prefix, 0) == prefix + "001"
    rid = ids.make_run_id(prefix, 0)
    assert ids.validate_run_id(rid) == rid
    # Each input changes the prefix.
    assert ids.run_id_prefix("nightly", now, COMMIT).startswith("nightly_20261121_201500_")
    assert ids.run_id_prefix("factory", parse_instant("2026-11-21T20:15:01Z"), COMMIT) != prefix
    assert ids.run_id_prefix("factory", now, "0" * 40) != prefix


def test_prefix_uses_utc_whatever_the_offset() -> None:
    local = parse_instant("2026-11-21T21:15:00+01:00")
    assert ids.run_id_prefix("factory", local, COMMIT).startswith("factory_20261121_201500_")
    assert compact(local) == "20261121_201500"
    assert format_ts(local) == "2026-11-21T20:15:00.000000Z"


@pytest.mark.parametrize(("existing", "suffix"), [(0, "001"), (1, "002"), (9, "010"), (41, "042"), (998, "999")])
def test_seq_is_three_digits_from_001(existing: int, suffix: str) -> None:
    assert ids.make_run_id("p_", existing) == "p_" + suffix


def test_seq_beyond_999_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="999"):
        ids.make_run_id("p_", 999)


def test_base_hash_is_first_8_hex_of_sha256_of_the_commit() -> None:
    assert ids.base_hash(COMMIT) == hashlib.sha256(COMMIT.encode("ascii")).hexdigest()[:8]
    assert len(ids.base_hash(COMMIT)) == 8


@pytest.mark.parametrize("bad", ["", "a/b", "-x", "a" * 33, "a_b"])
def test_bad_kinds_are_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="kind"):
        ids.validate_kind(bad)


@pytest.mark.parametrize("bad", ["Z", "a", "", "A/B", "AA" * 9])
def test_bad_worker_ids_are_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="worker ID"):
        ids.validate_worker_id(bad)


def test_clock_pinning() -> None:
    pinned = Clock.from_env(PINNED)
    assert pinned.now_ts() == "2026-11-21T20:15:00.000000Z"
    assert pinned.elapsed(pinned.monotonic()) == 0.0
    with pytest.raises(UsageError, match="--now"):
        Clock.from_env("not-a-time")
