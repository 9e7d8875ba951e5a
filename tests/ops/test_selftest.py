"""self-test: a deterministic smoke run in a scratch repository that leaves the user's alone."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.support.repos import make_repo, run_cli, snapshot
from tests.support.scratch import remove_tree


def step_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith(("ok  ", "FAIL"))]


def test_self_test_passes_leaves_the_users_repository_alone_and_is_deterministic(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "user-repo")
    (repo / "wip.txt").write_text("uncommitted work\n", encoding="utf-8")
    before = snapshot(repo)
    listing = sorted(
        p.relative_to(repo).as_posix() for p in repo.rglob("*") if ".git" not in p.parts
    )
    res = run_cli("self-test", "--json", cwd=repo)
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(res.stdout)  # stdout is only the JSON; progress went to stderr
    assert data["status"] == "PASS" and data["scratch"] is None
    names = [s["name"] for s in data["steps"]]
    assert all(s["ok"] for s in data["steps"])
    for expected in (
        "integrate (PASS run)",
        "bundle-validate (overlap run)",
        "integrate (overlap run)",
        "ledger-replay (PASS run)",
        "ledger-replay (overlap run)",
        "ledger-replay notices a one-byte edit",
    ):
        assert expected in names
    assert len(step_lines(res.stderr)) == len(data["steps"])
    assert snapshot(repo) == before
    assert (
        sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if ".git" not in p.parts)
        == listing
    )
    assert not (repo / "tools").exists()  # no runs folder, no ledger
    scratch = res.stderr.split("under ", 1)[1].split()[0]
    assert not Path(scratch).exists()  # the scratch folder is removed

    # Again outside any repository, as text, keeping the scratch folder: the same steps with
    # the same details (same commits, same run IDs, same outcomes).
    plain = tmp_path / "plain"
    plain.mkdir()
    second = run_cli("self-test", "--keep", cwd=plain)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.rstrip().endswith("steps behaved as expected")
    assert step_lines(second.stdout) == [
        f"ok   {s['n']:>2} {s['name']}: {s['detail']}" for s in data["steps"]
    ]
    assert len(data["steps"]) >= 15
    kept = Path(second.stderr.split("under ", 1)[1].split()[0])
    try:
        assert (
            kept / "repo" / "tools/codex/runs/selftest-pass/Z_integrator/FINAL_REPORT.txt"
        ).is_file()
    finally:
        remove_tree(kept)


@pytest.mark.skipif(
    os.name == "nt", reason="symlinking the interpreter needs privileges on Windows"
)
def test_self_test_fails_with_exit_1_when_git_is_missing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / Path(sys.executable).name
    python.symlink_to(sys.executable)
    res = run_cli("self-test", env={"PATH": str(bin_dir)}, cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "SELF-TEST FAIL" in res.stdout
    assert step_lines(res.stdout)[-1].startswith("FAIL") and "Traceback" not in res.stderr
