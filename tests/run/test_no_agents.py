"""Imports without pretending: a run launched without agents waits for imported bundles, a
worker never imported blocks, and the report's ``dry_run`` means what it says."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.repos import git
from tests.support.workers import assert_events_valid, cli, run_dir, status_doc, work_repo


def _diff(repo: Path, tmp_path: Path, rel: str, text: str, name: str) -> Path:
    """A `git diff` of one change made elsewhere (the repository is left as it was)."""
    (repo / rel).write_text(text)
    data = subprocess.run(
        ["git", "-C", str(repo), "diff", "--binary"], capture_output=True, check=True
    ).stdout
    git(repo, "checkout", "--", rel)
    out = tmp_path / name
    out.write_bytes(data)
    return out


def _report(repo: Path, run_id: str) -> str:
    return (run_dir(repo, run_id) / "Z_integrator" / "FINAL_REPORT.txt").read_text()


def test_a_run_without_agents_waits_for_imports_and_blocks_a_worker_never_imported(
    tmp_path: Path,
) -> None:
    repo = work_repo(tmp_path)
    res = cli(repo, "launch", "--no-agents", "--workers", "A,B")
    assert res.returncode == 0, res.stderr
    run_id = res.stdout.split()[1]
    assert f"factory bundle-import --run-id {run_id} --worker W --patch FILE" in res.stdout
    assert [status_doc(repo, run_id, w)["status"] for w in "AB"] == ["PENDING", "PENDING"]

    res = cli(repo, "bundle-validate", "--run-id", run_id, "--json")
    assert res.returncode == 3
    found = {(f["worker"], f["rule"]) for f in json.loads(res.stdout)["findings"]}
    assert found == {("A", "worker-not-done"), ("B", "worker-not-done")}

    a = _diff(repo, tmp_path, "src/app.py", "print('A')\n", "a.diff")
    assert (
        cli(
            repo, "bundle-import", "--run-id", run_id, "--worker", "A", "--patch", str(a)
        ).returncode
        == 0
    )
    res = cli(repo, "bundle-validate", "--run-id", run_id, "--json")
    assert res.returncode == 3
    findings = json.loads(res.stdout)["findings"]
    assert [(f["worker"], f["rule"]) for f in findings] == [("B", "worker-not-done")]
    assert "waiting for an imported bundle" in findings[0]["message"]

    b = _diff(repo, tmp_path, "tests/test_app.py", "def test_ok():\n    pass\n", "b.diff")
    assert (
        cli(
            repo, "bundle-import", "--run-id", run_id, "--worker", "B", "--patch", str(b)
        ).returncode
        == 0
    )
    assert cli(repo, "bundle-validate", "--run-id", run_id).returncode == 0
    assert cli(repo, "integrate", "--run-id", run_id).returncode == 0
    report = _report(repo, run_id)
    assert "dry_run:     false\nbundles:     A imported, B imported\n" in report
    assert cli(repo, "land", "--run-id", run_id).returncode == 0
    assert_events_valid(repo)
    assert cli(repo, "ledger-replay", "--run-id", run_id).returncode == 0


def test_the_api_launches_without_agents_too(tmp_path: Path) -> None:
    from tools.codex.factory import Factory

    repo = work_repo(tmp_path)
    with Factory(repo) as factory:
        run = factory.launch(no_agents=True, workers=["A"])
        checked = factory.validate(run.run_id)
    assert checked.status == "BLOCKED"
    assert [f["rule"] for f in checked.findings] == ["worker-not-done"]


def test_dry_run_in_the_report_means_no_agent_ran_and_no_real_patch_was_integrated(
    tmp_path: Path,
) -> None:
    repo = work_repo(tmp_path)
    res = cli(repo, "oneshot", "--dry-run", "--workers", "A,B", "--json")
    assert res.returncode == 0, res.stderr
    pure = json.loads(res.stdout)["run_id"]
    assert "dry_run:     true\nSTATUS:" in _report(repo, pure)

    res = cli(repo, "launch", "--dry-run", "--workers", "A,B", "--json")
    mixed = json.loads(res.stdout)["run_id"]
    a = _diff(repo, tmp_path, "src/app.py", "print('A')\n", "a.diff")
    assert (
        cli(repo, "bundle-import", "--run-id", mixed, "--worker", "A", "--patch", str(a)).returncode
        == 0
    )
    assert cli(repo, "bundle-validate", "--run-id", mixed).returncode == 0
    assert cli(repo, "integrate", "--run-id", mixed).returncode == 0
    assert "dry_run:     false\nbundles:     A imported, B dry-run\n" in _report(repo, mixed)
