"""A pinned clock earlier than the ledger's last event is raised to it (the ledger's times never
go back), and the command says so in one line instead of silently stamping another time."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.factory import launch_dry
from tests.support.repos import PINNED, make_repo, run_cli

EARLIER = "2026-01-02T03:04:05Z"


def _stamps(repo: Path) -> list[str]:
    ledger = repo / "tools/codex/runs/factory_ledger.jsonl"
    return [json.loads(line)["ts_utc"] for line in ledger.read_text().splitlines()]


def test_an_earlier_pinned_clock_is_said_once_on_stderr(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    run_id = launch_dry(repo)
    before = len(_stamps(repo))
    res = run_cli("--repo", str(repo), "--now", EARLIER, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 0, res.stderr
    told = [ln for ln in res.stderr.splitlines() if "never go back" in ln]
    assert told == [
        f"factory: --now {EARLIER.replace('Z', '.000000Z')} is earlier than the ledger's last "
        f"event: events are stamped {_stamps(repo)[-1]} instead (the ledger's times never go "
        "back); for byte-identical runs use a fresh ledger (paths.runs_dir set to a new folder, "
        "e.g. FACTORY_PATHS__RUNS_DIR)"
    ]
    assert "never go back" not in res.stdout
    assert len(_stamps(repo)) > before and set(_stamps(repo)[before:]) == {_stamps(repo)[0]}


def test_factory_now_is_named_and_the_same_instant_says_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    run_id = launch_dry(repo)
    same = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert same.returncode == 0 and "never go back" not in same.stderr
    env = {"FACTORY_NOW": EARLIER}
    res = run_cli("--repo", str(repo), "bundle-validate", "--run-id", run_id, env=env)
    assert res.returncode == 0, res.stderr
    assert [ln[:21] for ln in res.stderr.splitlines() if "never go back" in ln] == [
        "factory: FACTORY_NOW "
    ]
