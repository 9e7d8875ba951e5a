"""A record the factory wrote that is there but unreadable or malformed is never taken for
absent: a malformed VALIDATION.json is not "not validated", and a malformed worker STATUS.json
is not MISSING (which resume and clean decide on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.factory import launch_dry, make_patch, read_json, run_dir, set_bundle
from tests.support.repos import PINNED, make_repo, run_cli
from tests.support.workers import cli as worker_cli
from tests.support.workers import work_repo, worktrees
from tools.codex.factory.errors import UnreadableError
from tools.codex.factory.run import runboard


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "hi\n", "src/app.py": "x = 1\n"})


@pytest.mark.parametrize("bad", [b"{", b"{}", b"[1]"], ids=["not-json", "no-fields", "list"])
def test_a_malformed_validation_is_reported_as_such(repo: Path, bad: bytes) -> None:
    run_id = launch_dry(repo)
    set_bundle(repo, run_id, "A", make_patch(repo, {"src/app.py": "x = 2\n"}))
    assert run_cli("--repo", str(repo), "bundle-validate", "--run-id", run_id).returncode == 0
    (run_dir(repo, run_id) / "VALIDATION.json").write_bytes(bad)
    res = run_cli("--repo", str(repo), "--now", PINNED, "integrate", "--run-id", run_id)
    assert res.returncode == 3, res.stdout + res.stderr
    z = run_dir(repo, run_id) / "Z_integrator"
    report = (z / "FINAL_REPORT.txt").read_text(encoding="utf-8")
    assert "not validated" not in report
    assert "A_worker     unknown (VALIDATION.json unreadable)" in report
    status = read_json(z / "STATUS.json")
    assert status["status"] == "BLOCKED"
    assert any(
        r.startswith("summary: [validation-unreadable] VALIDATION.json is unreadable")
        for r in status["reasons"]
    ), status["reasons"]
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id, "--json")
    assert [d["what"] for d in json.loads(replay.stdout)["divergences"]] == ["VALIDATION.json"]


def test_an_absent_validation_is_still_not_validated(repo: Path) -> None:
    run_id = launch_dry(repo)
    res = run_cli("--repo", str(repo), "--now", PINNED, "integrate", "--run-id", run_id)
    assert res.returncode == 3
    report = (run_dir(repo, run_id) / "Z_integrator" / "FINAL_REPORT.txt").read_text("utf-8")
    assert "A_worker     not validated" in report and "unreadable" not in report


@pytest.mark.parametrize(
    "bad", [b"{", b'{"status": ""}', b'{"status": 7}', b"[]"], ids=["json", "empty", "int", "list"]
)
def test_a_malformed_worker_status_is_not_missing(repo: Path, bad: bytes) -> None:
    run_id = launch_dry(repo)
    folder = run_dir(repo, run_id)
    assert runboard.read_status(folder, "A") == "DONE"
    (folder / "A_worker" / "STATUS.json").unlink()
    assert runboard.read_status(folder, "A") == "MISSING"
    (folder / "A_worker" / "STATUS.json").write_bytes(bad)
    with pytest.raises(UnreadableError) as exc:
        runboard.read_status(folder, "A")
    assert str(exc.value).startswith("A_worker/STATUS.json is unreadable or malformed (")
    assert runboard.shown_status(folder, "A") == "UNREADABLE"


def test_clean_keeps_a_worktree_whose_status_is_unreadable(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    res = worker_cli(repo, "launch", "--workers", "A", "--json")
    run_id = json.loads(res.stdout)["run_id"]
    tree = next(iter(worktrees(repo).values()))
    (tree / "src" / "app.py").write_text("print('v2')\n")
    assert worker_cli(repo, "bundle-collect", "--run-id", run_id).returncode == 0
    assert worker_cli(repo, "bundle-validate", "--run-id", run_id).returncode == 0
    res = worker_cli(repo, "integrate", "--run-id", run_id, "--keep-worktrees")
    assert res.returncode == 0, res.stderr
    status = repo / "tools/codex/runs" / run_id / "A_worker" / "STATUS.json"
    status.write_bytes(b"{")
    res = worker_cli(repo, "clean", "--run-id", run_id)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "A_worker/STATUS.json is unreadable" in res.stderr, res.stderr
    assert tree.is_dir()
    # --resume decides on the status too: it refuses, naming the file, rather than rerun.
    res = worker_cli(repo, "launch", "--resume", "--run-id", run_id)
    assert res.returncode == 3 and "A_worker/STATUS.json is unreadable" in res.stderr, res.stderr
