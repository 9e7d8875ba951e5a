"""Progress while a command runs: each check is told on stderr as it starts and ends (its
events are recorded), nothing on stdout, nothing with --json."""

from __future__ import annotations

from pathlib import Path

from tests.support.factory import launch_dry, write_config
from tests.support.repos import PINNED, make_repo, run_cli


def test_integrate_tells_each_check_as_it_starts_and_ends(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    fails = ["{python}", "-c", "raise SystemExit(4)"]
    write_config(repo, {"checks": {"advisory": [{"name": "lint", "argv": fails}]}})
    runs = [launch_dry(repo, "--run-id", rid) for rid in ("p1", "p2")]
    for run_id in runs:
        res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
        assert res.returncode == 0, res.stderr
    res = run_cli("--repo", str(repo), "--now", PINNED, "integrate", "--run-id", runs[0])
    assert res.returncode == 0, res.stderr
    told = [ln for ln in res.stderr.splitlines() if ln.startswith("factory: check ")]
    assert told == [
        "factory: check diff-whitespace (required) running",
        "factory: check diff-whitespace: PASS (rc=0)",
        "factory: check lint (advisory) running",
        "factory: check lint: FAIL (rc=4)",
    ]
    assert "factory: check" not in res.stdout
    quiet = run_cli(
        "--repo", str(repo), "--now", PINNED, "integrate", "--run-id", runs[1], "--json"
    )
    assert quiet.returncode == 0 and "factory: check" not in quiet.stderr + quiet.stdout
