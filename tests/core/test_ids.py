"""Run IDs (DESIGN §3): hostile IDs are refused; generated IDs are deterministic."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.support.repos import PINNED
from tools.codex.factory.core import ids
from tools.codex.factory.errors import ArgumentError, UsageError
from tools.codex.factory.infra.clock import Clock, compact, format_ts, parse_instant

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
    with pytest.raises(ArgumentError, match="run ID") as exc:
        ids.validate_run_id(bad)
    assert exc.value.arg == "run_id" and "--" not in str(exc.value)


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
    assert (
        prefix == "factory_20261121_201500_" + hashlib.sha256(COMMIT.encode()).hexdigest()[:8] + "_"
    )
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


@pytest.mark.parametrize(
    ("existing", "suffix"), [(0, "001"), (1, "002"), (9, "010"), (41, "042"), (998, "999")]
)
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
    with pytest.raises(ArgumentError, match=r"^pinned time: 'not-a-time'") as exc:
        Clock.from_env("not-a-time")
    assert exc.value.with_option("--now").startswith("--now: 'not-a-time' is not")


# -- the clock's range: every timestamp has the fixed width that sorts as time -----------------

OUT_OF_RANGE = [
    "0999-01-01T00:00:00Z",  # 3-digit year: "999-..." would sort after "2026-..."
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC: OverflowError
    "9999-12-31T23:30:00-01:00",  # after year 9999 in UTC: OverflowError
    "1969-12-31T23:59:59Z",
]


@pytest.mark.parametrize("bad", OUT_OF_RANGE)
def test_instants_outside_1970_to_9999_utc_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError, match=r"^pinned time: .*1970\.\.9999"):
        Clock.from_env(bad)
    with pytest.raises(UsageError, match=r"FACTORY_NOW: .*1970\.\.9999"):
        parse_instant(bad, "FACTORY_NOW")


@pytest.mark.parametrize(
    "good", ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "1970-01-01T01:00:00+01:00"]
)
def test_the_range_ends_are_accepted_and_fixed_width(good: str) -> None:
    ts = Clock.from_env(good).now_ts()
    assert len(ts) == 27 and ts.endswith("Z")


def test_format_ts_pads_the_year_to_four_digits() -> None:
    import datetime as dt

    assert (
        format_ts(dt.datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc))
        == "0999-01-02T03:04:05.000006Z"
    )
    # Filters (--since) take any year: they compare with stored timestamps, never become one.
    assert (
        format_ts(parse_instant("0001-01-01", "--since", bounded=False))
        == "0001-01-01T00:00:00.000000Z"
    )
    with pytest.raises(UsageError, match="--since"):
        parse_instant(
            "0001-01-01T00:00:00+01:00", "--since", bounded=False
        )  # overflows: still one line


def test_cli_refuses_an_out_of_range_clock_and_creates_nothing(tmp_path: Path) -> None:
    from tests.support.repos import make_repo, run_cli

    repo = make_repo(tmp_path / "repo")
    for args, env, source in (
        (("--now", "0999-01-01T00:00:00Z"), None, "--now"),
        (("--now", "0001-01-01T00:00:00+01:00"), None, "--now"),
        ((), {"FACTORY_NOW": "0999-01-01T00:00:00Z"}, "FACTORY_NOW"),
    ):
        res = run_cli(
            "--repo", str(repo), *args, "launch", "--base-ref", "HEAD", "--dry-run", env=env
        )
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and source in lines[0] and "1970..9999" in lines[0], res.stderr
    assert not (repo / "tools").exists()
