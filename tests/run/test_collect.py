"""bundle-collect: the harness computes an honest bundle from whatever the worktree holds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.factory import write_plan
from tests.support.repos import git
from tests.support.workers import (
    apply_to_fresh_clone,
    base_commit,
    cli,
    events,
    run_dir,
    tree_files,
    work_repo,
    worktrees,
)
from tools.codex.factory.core import patchparse

EVERYTHING = [
    {"id": "A", "task": "Anything outside the holdout.", "allow": ["**"], "deny": ["scenarios/**"]}
]


def _launch_a(repo: Path, tmp_path: Path) -> tuple[str, Path]:
    plan = write_plan(tmp_path / "plan.json", EVERYTHING)
    res = cli(repo, "launch", "--plan", str(plan), "--json")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    return run_id, worktrees(repo)[f"factory/{run_id}/A"]


def test_collected_diff_reproduces_every_kind_of_change(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    run_id, wt = _launch_a(repo, tmp_path)
    # committed: a rename and a new binary file
    git(wt, "mv", "docs/guide.md", "docs/handbook.md")
    (wt / "assets").mkdir()
    (wt / "assets" / "blob.bin").write_bytes(bytes(range(256)) * 4)
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", "committed part")
    # staged: a modification; unstaged: a deletion; untracked: names with spaces and non-ASCII
    (wt / "src" / "app.py").write_text("print('changed')\n")
    git(wt, "add", "src/app.py")
    (wt / "README.md").unlink()
    (wt / "notes dir").mkdir()
    (wt / "notes dir" / "ünïcödé file.txt").write_text("hi\n", encoding="utf-8")
    if os.name != "nt":
        (wt / "setup.cfg").chmod(0o755)  # mode change only
    # git-ignored files and the notes folder are not part of the change
    (wt / ".gitignore").write_text("*.log\n")
    (wt / "debug.log").write_text("noise\n")
    (wt / ".factory" / "scratch.txt").write_text("notes\n")

    res = cli(repo, "bundle-collect", "--run-id", run_id, "--json")
    assert res.returncode == 0, res.stderr
    folder = run_dir(repo, run_id) / "A_worker"
    patch = (folder / "DIFF.patch").read_bytes()
    parsed = patchparse.parse(patch)
    statuses = {(f.new_path or f.old_path): f.status for f in parsed.files}
    assert statuses["docs/handbook.md"] == "renamed"
    assert statuses["README.md"] == "deleted" and statuses["src/app.py"] == "modified"
    assert statuses["assets/blob.bin"] == "added" and any(f.binary for f in parsed.files)
    if os.name != "nt":
        assert statuses["setup.cfg"] == "mode"
    files = json.loads((folder / "FILES_CHANGED.json").read_text(encoding="utf-8"))["files"]
    assert files == parsed.touched()
    assert "debug.log" not in files and not any(
        f.startswith((".factory", "scenarios")) for f in files
    )
    assert "notes dir/ünïcödé file.txt" in files

    # Applied to a fresh clone of the base, the patch gives exactly the worktree's files.
    clone = apply_to_fresh_clone(repo, base_commit(repo), patch, tmp_path / "clone")
    want = tree_files(wt)
    del want["debug.log"]
    got = tree_files(clone)
    assert {k: v for k, v in got.items() if not k.startswith("scenarios/")} == want
    assert "scenarios/holdout.md" in got  # absent in the worktree, not deleted by the patch
    if os.name != "nt":
        assert (clone / "setup.cfg").stat().st_mode & 0o111

    # The worktree's own index and HEAD were not touched by the collection.
    assert git(wt, "diff", "--cached", "--name-only") == "src/app.py\n"
    assert git(wt, "log", "-1", "--format=%s").strip() == "committed part"

    # Collecting again without changes gives the same bytes.
    assert cli(repo, "bundle-collect", "--run-id", run_id).returncode == 0
    assert (folder / "DIFF.patch").read_bytes() == patch
    assert cli(repo, "bundle-validate", "--run-id", run_id).returncode == 0
    assert cli(repo, "integrate", "--run-id", run_id).returncode == 0
    assert worktrees(repo) == {}


def test_invalid_handoff_note_is_kept_and_blocks_validation(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    run_id, wt = _launch_a(repo, tmp_path)
    (wt / "src" / "app.py").write_text("print('x')\n")
    (wt / ".factory" / "HANDOFF_NOTE.json").write_text(
        json.dumps({"schema_version": 1, "worker": "A"})
    )
    res = cli(repo, "bundle-collect", "--run-id", run_id)
    assert res.returncode == 0
    warning = [ln for ln in res.stderr.splitlines() if "HANDOFF_NOTE.json" in ln]
    assert (
        len(warning) == 1
        and "depends_on" in warning[0]
        and "bundle-validate will block" in warning[0]
    )
    ev = [e for e in events(repo, run_id) if e["event_type"] == "bundle.collected"][-1]["payload"]
    assert ev["notes"]["HANDOFF_NOTE.json"] == "invalid" and "depends_on" in ev["handoff_error"]
    res = cli(repo, "bundle-validate", "--run-id", run_id, "--json")
    assert res.returncode == 3
    findings = json.loads(res.stdout)["findings"]
    assert [(f["path"], f["rule"]) for f in findings] == [("HANDOFF_NOTE.json", "schema-violation")]
    # Fixed and collected again: PASS.
    (wt / ".factory" / "HANDOFF_NOTE.json").write_text("{not json")
    cli(repo, "bundle-collect", "--run-id", run_id)
    res = cli(repo, "bundle-validate", "--run-id", run_id, "--json")
    assert [f["rule"] for f in json.loads(res.stdout)["findings"]] == ["json-invalid"]
    (wt / ".factory" / "HANDOFF_NOTE.json").write_text(
        json.dumps({"schema_version": 1, "worker": "A", "depends_on": []})
    )
    cli(repo, "bundle-collect", "--run-id", run_id)
    assert cli(repo, "bundle-validate", "--run-id", run_id).returncode == 0
    assert cli(repo, "clean", "--run-id", run_id, "--force").returncode == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--run-id", "nope"],
            "factory: error: run nope: no run folder tools/codex/runs/nope",
        ),
        (["--run-id", "../x"], "factory: error: --run-id: run ID '../x' contains '..'"),
    ],
)
def test_collect_bad_input_is_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    repo = work_repo(tmp_path)
    res = cli(repo, "bundle-collect", *args)
    assert res.returncode == 2
    assert res.stderr.strip() == expected


def test_collect_of_a_dry_run_or_unknown_worker_is_refused(tmp_path: Path) -> None:
    repo = work_repo(tmp_path)
    res = cli(repo, "launch", "--dry-run", "--json")
    run_id = json.loads(res.stdout)["run_id"]
    res = cli(repo, "bundle-collect", "--run-id", run_id)
    assert res.returncode == 2
    assert (
        res.stderr.strip()
        == f"factory: error: run {run_id} is a dry run: it has no worktrees to collect"
    )
    res = cli(repo, "launch", "--workers", "A", "--json")
    run_id = json.loads(res.stdout)["run_id"]
    res = cli(repo, "bundle-collect", "--run-id", run_id, "--workers", "B")
    assert res.returncode == 2 and res.stderr.strip() == (
        "factory: error: workers B: not in this run (workers: A)"
    )
    assert cli(repo, "clean", "--run-id", run_id, "--force").returncode == 0
    res = cli(repo, "bundle-collect", "--run-id", run_id)
    assert (
        res.returncode == 2 and f"A_worker: no worktree on branch factory/{run_id}/A" in res.stderr
    )
    assert len(res.stderr.strip().splitlines()) == 1
