"""``preflight`` reports and creates nothing; a misplaced runs folder or ledger is a FAIL line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.repos import git, run_cli


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if ".git" not in p.parts)


def checks_of(res_stdout: str) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in json.loads(res_stdout)["checks"]}


def test_preflight_creates_nothing_in_a_fresh_repository(repo: Path) -> None:
    before = files_under(repo)
    res = run_cli("--repo", str(repo), "preflight", "--json")
    assert res.returncode == 0, res.stderr
    found = checks_of(res.stdout)
    assert found["runs-folder"]["ok"] and "does not exist yet" in str(
        found["runs-folder"]["detail"]
    )
    assert files_under(repo) == before  # no runs folder, no probe file, no ledger
    assert git(repo, "status", "--porcelain", "--ignored") == ""


def test_preflight_probes_an_existing_runs_folder_and_leaves_it_as_it_was(repo: Path) -> None:
    runs = repo / "tools/codex/runs"
    runs.mkdir(parents=True)
    res = run_cli("--repo", str(repo), "preflight", "--json")
    assert res.returncode == 0, res.stderr
    assert checks_of(res.stdout)["runs-folder"]["detail"] == "tools/codex/runs is writable"
    assert list(runs.iterdir()) == []


def test_preflight_refuses_a_runs_folder_holding_user_files(repo: Path) -> None:
    res = run_cli(
        "--repo", str(repo), "preflight", "--json", env={"FACTORY_PATHS__RUNS_DIR": "src"}
    )
    assert res.returncode == 3, res.stderr
    failed = checks_of(res.stdout)["runs-folder"]
    assert (
        not failed["ok"]
        and "src/app.py" in str(failed["detail"])
        and "FACTORY_PATHS__RUNS_DIR" in str(failed["detail"])
    )
    assert "paths.runs_dir" in str(failed["fix"])
    assert not (repo / "src/.gitignore").exists()
    text = run_cli("--repo", str(repo), "preflight", env={"FACTORY_PATHS__RUNS_DIR": "src"})
    line = next(x for x in text.stdout.splitlines() if x.startswith("FAIL runs-folder"))
    assert "-> fix:" in line


@pytest.mark.parametrize("shape", ["runs-is-a-file", "parent-is-a-file", "ledger-is-a-dir"])
def test_preflight_reports_a_misshapen_runs_folder_or_ledger(repo: Path, shape: str) -> None:
    runs = repo / "tools/codex/runs"
    if shape == "runs-is-a-file":
        runs.parent.mkdir(parents=True)
        runs.write_bytes(b"mine\n")
    elif shape == "parent-is-a-file":
        (repo / "tools").write_bytes(b"mine\n")
    else:
        (runs / "factory_ledger.jsonl").mkdir(parents=True)
    before = files_under(repo)
    res = run_cli("--repo", str(repo), "preflight", "--json")
    assert res.returncode == 3, (res.stdout, res.stderr)
    assert "internal error" not in res.stderr
    found = checks_of(res.stdout)
    assert not found["ledger"]["ok"]
    assert found["runs-folder"]["ok"] is (shape == "ledger-is-a-dir")
    assert files_under(repo) == before


@pytest.mark.skipif(
    os.name == "nt" or (hasattr(os, "geteuid") and os.geteuid() == 0),
    reason="needs POSIX permissions that apply (not root)",
)
def test_preflight_reports_an_unwritable_parent_without_creating(repo: Path) -> None:
    codex = repo / "tools/codex"
    codex.mkdir(parents=True)
    codex.chmod(0o555)
    try:
        res = run_cli("--repo", str(repo), "preflight", "--json")
    finally:
        codex.chmod(0o755)
    assert res.returncode == 3
    assert not checks_of(res.stdout)["runs-folder"]["ok"]


def test_a_dirty_working_tree_is_a_warn_naming_its_files(repo: Path) -> None:
    clean = run_cli("--repo", str(repo), "preflight", "--json")
    assert checks_of(clean.stdout)["working-tree"]["level"] == "OK"
    (repo / "README.md").write_text("changed\n", encoding="utf-8")
    for i in range(25):
        (repo / f"new{i:02d}.txt").write_text("x\n", encoding="utf-8")
    res = run_cli("--repo", str(repo), "preflight", "--json")
    assert res.returncode == 0, res.stderr  # a WARN: the run may go on
    tree = checks_of(res.stdout)["working-tree"]
    assert tree["level"] == "WARN" and tree["ok"] is True
    detail = str(tree["detail"])
    assert detail.startswith("26 uncommitted path(s) will not be in the run: README.md, new00.txt")
    assert detail.endswith("and 6 more") and "new19.txt" not in detail  # bounded: 20 named
    assert "git stash -u" in str(tree["fix"]) and "--base-ref" in str(tree["fix"])
    # oneshot and launch say so on stderr (not on stdout, which carries the JSON).
    shot = run_cli("--repo", str(repo), "oneshot", "--dry-run", "--json")
    assert shot.returncode == 0, shot.stderr
    assert json.loads(shot.stdout)["status"] == "PASS"
    assert "factory: WARN working-tree: 26 uncommitted path(s)" in shot.stderr
    launched = run_cli("--repo", str(repo), "launch", "--dry-run")
    assert "factory: WARN working-tree: 26 uncommitted" in launched.stderr


def test_preflight_and_doctor_name_their_checks_alike(repo: Path) -> None:
    from tools.codex.factory.ops.doctor import REPO_DEPENDENT

    pre = run_cli("--repo", str(repo), "preflight", "--json")
    doc = run_cli("--repo", str(repo), "doctor", "--json")
    pre_names = set(checks_of(pre.stdout)) - {"run-id"}
    doc_names = set(checks_of(doc.stdout))
    assert pre_names <= doc_names, pre_names - doc_names
    assert {"working-tree", "base-ref", "runs-folder", "ledger"} <= pre_names
    assert set(REPO_DEPENDENT) <= doc_names


@pytest.mark.skipif(os.name == "nt", reason="the filter is a POSIX shell command")
def test_the_working_tree_probe_runs_no_filter_and_writes_no_index(
    repo: Path, tmp_path: Path
) -> None:
    """`git status` would run a clean filter a config names on a changed file (and refresh the
    index): the probe asks git with every driver emptied and without optional locks."""
    import shlex

    (repo / ".gitattributes").write_text("*.py filter=pwn\n", encoding="utf-8")
    (repo / "tool.py").write_text("print(1)\n", encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "attributes")
    marker = tmp_path / "PWNED"
    config = tmp_path / "global.gitconfig"
    git(
        tmp_path,
        "config",
        "--file",
        str(config),
        "filter.pwn.clean",
        f"sh -c 'touch {shlex.quote(str(marker))}; cat'",
    )
    (repo / "tool.py").write_text("print(2)\n", encoding="utf-8")
    index = (repo / ".git" / "index").read_bytes()
    res = run_cli(
        "--repo", str(repo), "preflight", "--json", env={"GIT_CONFIG_GLOBAL": str(config)}
    )
    assert res.returncode == 0, res.stderr
    assert "tool.py" in str(checks_of(res.stdout)["working-tree"]["detail"])
    assert not marker.exists()
    assert (repo / ".git" / "index").read_bytes() == index
