"""The CLI as an operator runs it (real processes): version, help, ledger commands, JSON
output and --json-out, filters, and one-line usage errors."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import orjson
import pytest

from tests.support.repos import PINNED, ROOT, make_repo, run_cli
from tools.codex.factory import __version__
from tools.codex.factory.cli.commands import cli
from tools.codex.factory.infra.clock import Clock, parse_instant
from tools.codex.factory.ledger.store import Ledger

LEDGER_REL = "tools/codex/runs/factory_ledger.jsonl"
T0 = parse_instant(PINNED)
VERIFY_KEYS = {
    "ok",
    "lines",
    "head",
    "first_bad_seq",
    "reason",
    "torn_tail",
    "torn_bytes",
    "head_file",
    "notes",
    "path",
}
EVENT_KEYS = {"event_type", "hash", "payload", "prev_hash", "run_id", "seq", "stage", "ts_utc"}


def command_paths() -> list[list[str]]:
    def walk(cmd: click.Command, path: list[str]) -> list[list[str]]:
        out = [path]
        if isinstance(cmd, click.Group):
            for name in sorted(cmd.commands):
                out.extend(walk(cmd.commands[name], [*path, name]))
        return out

    return walk(cli, [])


def fill(repo: Path) -> list[dict[str, object]]:
    """A small real ledger: equal and increasing timestamps, several runs and types."""
    plan: list[tuple[int, str, str, dict[str, Any]]] = [
        (0, "run.started", "run_a", {"kind": "factory", "actor": "operator"}),
        (0, "stage.started", "run_a", {}),
        (0, "stage.finished", "run_a", {"status": "PASS", "rc": 0, "reason": "naïve — ✓ 日本"}),
        (5, "run.started", "run_b", {"kind": "nightly"}),
        (5, "stage.finished", "run_b", {"status": "BLOCKED", "rc": 3}),
        (9, "run.finished", "run_a", {"status": "PASS"}),
        (12, "run.finished", "run_b", {"status": "BLOCKED"}),
    ]
    with Ledger(repo / LEDGER_REL, Clock(T0), fsync=False) as led:
        for secs, etype, run_id, payload in plan:
            led.clock = Clock(T0 + dt.timedelta(seconds=secs))
            led.append(etype, run_id, "stage", payload)
    return [orjson.loads(line) for line in (repo / LEDGER_REL).read_bytes().splitlines()]


def sort_key(e: dict[str, object]) -> tuple[str, str, int]:
    return (str(e["ts_utc"]), str(e["event_type"]), int(str(e["seq"])))


def assert_one_line_usage_error(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    err = res.stderr
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0]


# -- version and help ---------------------------------------------------------------------------


def test_version() -> None:
    res = run_cli("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"factory, version {__version__}"


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "(top)")
def test_help_for_every_command(path: list[str], tmp_path: Path) -> None:
    res = run_cli(*path, "--help", cwd=tmp_path)  # no repository needed for --help
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Usage: factory")
    assert " ".join(path) in res.stdout.splitlines()[0]
    assert res.stderr == ""


def test_top_level_help_lists_the_ledger_and_config_commands() -> None:
    res = run_cli("--help")
    for name in ("ledger", "config", "--repo", "--now", "--version"):
        assert name in res.stdout


# -- ledger verify ------------------------------------------------------------------------------


def test_ledger_verify_ok_and_json_keys(repo: Path) -> None:
    events = fill(repo)
    res = run_cli("--repo", str(repo), "ledger", "verify")
    assert res.returncode == 0, res.stderr
    assert "VERIFY OK" in res.stdout
    assert f"head seq={len(events)} hash={events[-1]['hash']}" in res.stdout
    res = run_cli("--repo", str(repo), "ledger", "verify", "--json")
    assert res.returncode == 0
    doc = json.loads(res.stdout)
    assert set(doc) == VERIFY_KEYS
    assert doc["ok"] is True and doc["lines"] == len(events)
    assert doc["head"] == {"seq": len(events), "hash": events[-1]["hash"]}
    assert doc["first_bad_seq"] is None and doc["path"] == LEDGER_REL


def test_ledger_verify_exit_3_on_a_tampered_ledger(repo: Path) -> None:
    fill(repo)
    path = repo / LEDGER_REL
    path.write_bytes(path.read_bytes().replace(b'"rc":3', b'"rc":0'))  # edit line 5
    res = run_cli("--repo", str(repo), "ledger", "verify")
    assert res.returncode == 3
    assert "VERIFY FAILED at seq 5" in res.stdout
    res = run_cli("--repo", str(repo), "ledger", "verify", "--json")
    assert res.returncode == 3
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and doc["first_bad_seq"] == 5 and doc["lines"] == 4
    # Corruption is never "repaired".
    res = run_cli("--repo", str(repo), "ledger", "repair")
    assert res.returncode == 3
    assert "seq 5" in res.stderr and "not repaired automatically" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_torn_tail_through_the_cli(repo: Path) -> None:
    events = fill(repo)
    path = repo / LEDGER_REL
    with open(path, "ab") as fh:
        fh.write(b'{"event_type":"run.sta')
    res = run_cli("--repo", str(repo), "ledger", "verify")
    assert res.returncode == 3 and "torn tail" in res.stdout and "ledger repair" in res.stdout
    shown = run_cli("--repo", str(repo), "ledger", "--limit", "2", "--json")  # reading still works
    assert shown.returncode == 0
    assert [e["seq"] for e in json.loads(shown.stdout)] == [len(events) - 1, len(events)]
    res = run_cli("--repo", str(repo), "--now", PINNED, "ledger", "repair", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["repaired"] is True and out["torn_bytes"] == len(b'{"event_type":"run.sta')
    assert (path.parent / out["side_file"]).read_bytes() == b'{"event_type":"run.sta'
    assert run_cli("--repo", str(repo), "ledger", "verify").returncode == 0
    again = run_cli("--repo", str(repo), "ledger", "repair")
    assert again.returncode == 0 and "nothing to repair" in again.stdout


# -- ledger show ------------------------------------------------------------------------------


def test_json_out_is_utf8_and_identical_to_json_stdout(repo: Path, tmp_path: Path) -> None:
    fill(repo)
    for args in (["ledger"], ["ledger", "verify"], ["config", "show"], ["ledger", "--limit", "3"]):
        out = tmp_path / ("-".join(args) + ".json")
        # A console that cannot encode the payload's characters must not matter.
        res = run_cli(
            "--repo",
            str(repo),
            *args,
            "--json",
            "--json-out",
            str(out),
            env={"PYTHONIOENCODING": "cp1252"},
        )
        assert res.returncode == 0, res.stderr
        assert out.read_bytes() == res.stdout.encode("utf-8"), args
        json.loads(out.read_bytes().decode("utf-8"))
    data = (tmp_path / "ledger.json").read_bytes()
    assert "naïve — ✓ 日本".encode() in data


def test_json_out_without_json_still_prints_text(repo: Path, tmp_path: Path) -> None:
    events = fill(repo)
    out = tmp_path / "sub" / "v.json"
    res = run_cli("--repo", str(repo), "ledger", "verify", "--json-out", str(out))
    assert res.returncode == 0 and "VERIFY OK" in res.stdout
    assert json.loads(out.read_text(encoding="utf-8"))["lines"] == len(events)


def test_text_table_survives_a_narrow_console_encoding(repo: Path) -> None:
    """A cp1252 console (PowerShell) cannot show every character: the table still prints."""
    fill(repo)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONIOENCODING="cp1252")
    res = subprocess.run(
        [sys.executable, "-m", "tools.codex.factory", "--repo", str(repo), "ledger"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == b""
    text = res.stdout.decode("cp1252")
    assert len(text.strip().splitlines()) == 7
    assert "reason=naïve" in text  # what cp1252 has is written as is


def test_default_view_is_sorted_by_ts_then_event_type(repo: Path) -> None:
    events = fill(repo)
    res = run_cli("--repo", str(repo), "ledger", "--json")
    assert res.returncode == 0
    shown = json.loads(res.stdout)
    assert shown == sorted(events, key=sort_key)
    assert shown != events  # the file order differs: equal ts are ordered by event_type
    assert all(set(e) == EVENT_KEYS for e in shown)
    table = run_cli("--repo", str(repo), "ledger").stdout.strip().splitlines()
    assert [int(line.split()[1]) for line in table] == [e["seq"] for e in shown]


def test_raw_events_prints_the_stored_lines_unchanged(repo: Path) -> None:
    fill(repo)
    stored = (repo / LEDGER_REL).read_bytes().decode("utf-8").splitlines()
    res = run_cli("--repo", str(repo), "ledger", "--raw-events")
    assert res.returncode == 0
    printed = res.stdout.splitlines()
    assert printed == sorted(stored, key=lambda s: sort_key(json.loads(s)))
    res = run_cli("--repo", str(repo), "ledger", "--raw-events", "--limit", "2")
    assert res.stdout.splitlines() == printed[-2:]


@pytest.mark.parametrize("n", [0, 1, 3, 7, 50])
def test_limit_is_the_last_n_of_the_sorted_list(repo: Path, n: int) -> None:
    events = fill(repo)
    res = run_cli("--repo", str(repo), "ledger", "--limit", str(n), "--json")
    assert res.returncode == 0, res.stderr
    full = sorted(events, key=sort_key)
    assert json.loads(res.stdout) == (full[-n:] if n else [])


def test_filters(repo: Path) -> None:
    events = fill(repo)

    def seqs(*args: str) -> list[int]:
        res = run_cli("--repo", str(repo), "ledger", *args, "--json")
        assert res.returncode == 0, res.stderr
        return [e["seq"] for e in json.loads(res.stdout)]

    assert seqs("--event-type", "run.finished") == [6, 7]
    assert seqs("--event-type", "stage.*") == [3, 2, 5]  # sorted: finished < started
    assert seqs("--run-id", "run_b") == [4, 5, 7]
    assert seqs("--run-id", "run_b", "--limit", "1") == [7]
    assert seqs("--since", "2026-11-21T20:15:05Z") == [4, 5, 6, 7]
    assert seqs("--since", "2026-11-21T20:15:06Z", "--run-id", "run_a") == [6]
    assert seqs("--status", "blocked") == [5, 7]
    assert seqs("--rc", "0") == [3]
    assert seqs("--run-id", "nope") == []
    assert len(events) == 7
    res = run_cli("--repo", str(repo), "ledger", "--since", "last tuesday")
    assert_one_line_usage_error(res, "--since", "last tuesday")


def test_empty_ledger_shows_no_events(repo: Path) -> None:
    res = run_cli("--repo", str(repo), "ledger")
    assert res.returncode == 0 and res.stdout.strip() == "(no events)"
    res = run_cli("--repo", str(repo), "ledger", "--json")
    assert json.loads(res.stdout) == []


# -- usage errors -----------------------------------------------------------------------------


def test_bad_now_is_a_one_line_usage_error(repo: Path) -> None:
    res = run_cli("--repo", str(repo), "--now", "garbage", "ledger")
    assert_one_line_usage_error(res, "--now", "garbage")
    res = run_cli("--repo", str(repo), "ledger", env={"FACTORY_NOW": "2026-13-45"})
    assert_one_line_usage_error(res, "FACTORY_NOW")


def test_outside_a_git_repository_is_a_one_line_usage_error(tmp_path: Path) -> None:
    plain = tmp_path / "not-a-repo"
    plain.mkdir()
    env = {"GIT_CEILING_DIRECTORIES": str(tmp_path)}
    res = run_cli("ledger", "verify", cwd=plain, env=env)
    assert_one_line_usage_error(res, "not inside a git repository", "--repo")
    res = run_cli("--repo", str(plain), "config", "show", env=env)
    assert_one_line_usage_error(res, "not inside a git repository")
    res = run_cli("--repo", str(tmp_path / "missing"), "ledger")
    assert_one_line_usage_error(res, "no such directory")
    assert list(plain.iterdir()) == []  # nothing was created


def test_repo_defaults_to_the_git_top_level(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    fill(repo)
    res = run_cli("ledger", "verify", "--json", cwd=repo / "src")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["lines"] == 7
