"""Integrating a subset of the planned workers is never recorded as a PASS: the run says which
workers its verdict covers, and the report says it first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.factory import launch_dry, make_patch, read_json, run_dir, set_bundle
from tests.support.ledgers import ledger_lines, rewrite_ledger
from tests.support.repos import PINNED, make_repo, run_cli
from tools.codex.factory.audit.replay import replay
from tools.codex.factory.core import decisions
from tools.codex.factory.infra import jsonio, schemas
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.run.context import Context

FILES = {"README.md": "hello\n", "src/app.py": "x = 1\n"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def cli(repo: Path, *args: str) -> tuple[int, str]:
    res = run_cli("--repo", str(repo), "--now", PINNED, *args)
    assert "Traceback" not in res.stderr
    return res.returncode, res.stdout


def prepared(repo: Path, *select: str) -> str:
    """A run of the four default workers, D with a change in its scope, validated."""
    run_id = launch_dry(repo)
    set_bundle(repo, run_id, "D", make_patch(repo, {"Makefile": "all:\n"}))
    code, out = cli(repo, "bundle-validate", "--run-id", run_id, *select)
    assert code == 0, out
    return run_id


def replay_divergences(repo: Path, run_id: str) -> list[dict[str, str]]:
    ctx = Context(repo_opt=repo, clock=Clock(None))
    try:
        data = replay(ctx, run_id).data
    finally:
        ctx.close()
    return list(json.loads(jsonio.canonical(data))["divergences"])


def test_a_subset_is_not_a_pass_and_says_so_first(repo: Path) -> None:
    run_id = prepared(repo, "--workers", "D")
    code, out = cli(repo, "integrate", "--run-id", run_id, "--workers", "D", "--json")
    assert code == 3
    data = json.loads(out)
    assert data["status"] == "BLOCKED"
    assert (data["covers"], data["left_out"]) == (["D"], ["A", "B", "C"])
    assert data["reasons"] == ["integrate: partial integration: left out A, B, C"]
    z = run_dir(repo, run_id) / "Z_integrator"
    status = read_json(z / "STATUS.json")
    assert schemas.errors("integrator_status", status) == []
    assert (status["status"], status["covers"], status["left_out"]) == (
        "BLOCKED",
        ["D"],
        ["A", "B", "C"],
    )
    report = (z / "FINAL_REPORT.txt").read_text(encoding="utf-8").splitlines()
    assert (
        report[1]
        == "PARTIAL: this verdict covers D_worker only; left out: A_worker, B_worker, C_worker"
    )
    code, text = cli(repo, "integrate", "--run-id", run_id, "--workers", "D")
    assert code == 3 and text.splitlines()[1].startswith("PARTIAL: this verdict covers D_worker")
    assert replay_divergences(repo, run_id) == []


def test_all_workers_still_pass(repo: Path) -> None:
    run_id = prepared(repo)
    code, out = cli(repo, "integrate", "--run-id", run_id, "--json")
    assert code == 0, out
    data = json.loads(out)
    assert (data["status"], data["covers"], data["left_out"]) == ("PASS", ["A", "B", "C", "D"], [])
    report = (run_dir(repo, run_id) / "Z_integrator" / "FINAL_REPORT.txt").read_text("utf-8")
    assert "PARTIAL" not in report


def test_replay_catches_a_subset_recorded_as_pass(repo: Path) -> None:
    run_id = prepared(repo, "--workers", "D")
    assert cli(repo, "integrate", "--run-id", run_id, "--workers", "D")[0] == 3
    events = ledger_lines(repo)
    for e in events:
        if e["run_id"] != run_id:
            continue
        if e["event_type"] == "stage.finished" and e["stage"] == "integrate":
            e["payload"].update(status="PASS", reason="")
    rewrite_ledger(repo, events)
    whats = [d["what"] for d in replay_divergences(repo, run_id)]
    assert any(
        w.startswith("integrate stage (recomputed by decisions.integrate_outcome") for w in whats
    ), whats


def test_partial_decision_is_pure() -> None:
    assert decisions.left_out(["A", "B", "C", "D"], ["D"]) == ["A", "B", "C"]
    assert decisions.integrate_outcome("", [], [], missing=["B"]) == (
        "BLOCKED",
        "partial integration: left out B",
    )
    assert decisions.integrate_outcome("", [], []) == ("PASS", "")


def test_replay_checks_what_status_says_it_covers(repo: Path) -> None:
    run_id = prepared(repo, "--workers", "D")
    assert cli(repo, "integrate", "--run-id", run_id, "--workers", "D")[0] == 3
    path = run_dir(repo, run_id) / "Z_integrator" / "STATUS.json"
    doc = read_json(path)
    doc["covers"], doc["left_out"] = ["A", "B", "C", "D"], []
    path.write_text(json.dumps(doc), encoding="utf-8")
    found = {d["what"]: d["expected"] for d in replay_divergences(repo, run_id)}
    assert "Z_integrator/STATUS.json left_out (replayed)" in found, found
    assert found["Z_integrator/STATUS.json covers (replayed)"] == '["D"]'
