"""Config where users want it: --config / FACTORY_CONFIG, checks with env, cwd and
{project_python}, a runs folder outside the repository, and a ledger `git clean -x` deletes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.factory import write_json
from tests.support.repos import git, make_repo, run_cli

NOW = "2026-11-21T20:15:00Z"


def _show(repo: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    res = run_cli("--repo", str(repo), *args, "config", "show", "--json", env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_config_option_and_variable_name_the_file_read(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    cfg = tmp_path / "elsewhere" / "factory.json"
    cfg.parent.mkdir()
    write_json(cfg, {"run": {"kind": "nightly"}})
    doc = _show(repo, "--config", str(cfg))
    assert doc["config"]["run"]["kind"] == "nightly"
    assert doc["file"] == str(cfg) and doc["file_source"] == "--config"
    assert doc["origins"]["run.kind"] == f"file:{cfg}"
    by_env = _show(repo, env={"FACTORY_CONFIG": str(cfg)})
    assert by_env["config"]["run"]["kind"] == "nightly"
    assert by_env["file_source"] == "FACTORY_CONFIG"
    text = run_cli("--repo", str(repo), "--config", str(cfg), "config", "show")
    assert text.stdout.splitlines()[0] == f"config file: {cfg} (from --config)"
    none = run_cli("--repo", str(repo), "config", "show")
    assert none.stdout.startswith("config file: none (tools/codex/factory/factory.config.json")
    missing = run_cli(
        "--repo", str(repo), "--config", str(tmp_path / "nope.json"), "config", "show"
    )
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        f"factory: error: config file {tmp_path / 'nope.json'} (from --config): no such file"
    )
    # A run reads it too: its kind is the run ID's first part.
    shot = run_cli("--repo", str(repo), "--config", str(cfg), "oneshot", "--dry-run", "--json")
    assert shot.returncode == 0, shot.stderr
    assert json.loads(shot.stdout)["run_id"].startswith("nightly_")


WRAPPER = """#!/bin/sh
echo project-python >> "$MARK"
exec {python} "$@"
"""
PROBE = (
    "import os, sys; open(os.environ['OUT'], 'w').write(os.getcwd() + '\\n' + os.environ['PATH'])"
)


@pytest.mark.skipif(os.name == "nt", reason="a POSIX shell script stands in for the venv")
def test_checks_take_env_cwd_and_the_project_python(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "src/app/x.py": "x = 1\n"})
    venv_python = repo / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(WRAPPER.format(python=sys.executable), encoding="utf-8")
    venv_python.chmod(0o755)
    out, mark = tmp_path / "probe.txt", tmp_path / "mark.txt"
    check = {
        "name": "probe",
        "argv": ["{project_python}", "-c", PROBE],
        "env": {"OUT": str(out), "MARK": str(mark), "WHERE": "{sandbox}"},
        "cwd": "src/app",
    }
    cfg = tmp_path / "cfg.json"
    write_json(cfg, {"checks": {"required": [check]}})
    res = run_cli("--repo", str(repo), "--config", str(cfg), "oneshot", "--dry-run", "--json")
    assert res.returncode == 0, res.stderr
    assert mark.read_text(encoding="utf-8") == "project-python\n"  # the repository's .venv
    cwd, path = out.read_text(encoding="utf-8").split("\n")
    assert cwd.endswith(os.sep + os.path.join("src", "app"))
    assert path == os.environ["PATH"]  # merged over the sanitized environment, not instead


@pytest.mark.parametrize(
    ("check", "said"),
    [
        ({"cwd": "../outside"}, "checks.required[0].cwd: path '../outside' contains '..'"),
        ({"cwd": "/tmp"}, "checks.required[0].cwd: path '/tmp' is absolute"),
        ({"env": {"GIT_DIR": "x"}}, "checks.required[0].env.GIT_DIR: a check may not set GIT_*"),
        ({"env": {"X": "{nope}"}}, "checks.required[0].env.X: unknown placeholder {nope}"),
    ],
)
def test_check_cwd_and_env_are_validated(tmp_path: Path, check: dict[str, Any], said: str) -> None:
    repo = make_repo(tmp_path / "repo")
    cfg = tmp_path / "cfg.json"
    write_json(cfg, {"checks": {"required": [{"name": "c", "argv": ["true"], **check}]}})
    res = run_cli("--repo", str(repo), "--config", str(cfg), "config", "show")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and said in res.stderr, res.stderr


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_a_check_cwd_that_is_a_link_in_the_merged_tree_fails_the_check(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    os.symlink(str(tmp_path), repo / "out")  # a folder link in the tree the checks run on
    git(repo, "add", "out")
    git(repo, "commit", "-q", "-m", "link")
    cfg = tmp_path / "cfg.json"
    check = {"name": "c", "argv": [sys.executable, "-c", "open('escaped', 'w')"], "cwd": "out"}
    write_json(cfg, {"checks": {"required": [check]}})
    res = run_cli(
        "--repo", str(repo), "--config", str(cfg), "--now", NOW, "oneshot", "--dry-run", "--json"
    )
    assert res.returncode in (1, 3), res.stdout + res.stderr  # the required check did not pass
    assert not (tmp_path / "escaped").exists()
    run = json.loads(res.stdout)["run_id"]
    log = repo / "tools/codex/runs" / run / "Z_integrator/LOGS/check-c.stderr.log"
    assert "check cwd 'out': out is a link in the merged tree" in log.read_text(encoding="utf-8")


def test_a_runs_folder_outside_the_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    outside = tmp_path / "kept" / "runs"
    env = {"FACTORY_PATHS__RUNS_DIR": str(outside)}
    res = run_cli("--repo", str(repo), "--now", NOW, "oneshot", "--dry-run", "--json", env=env)
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout)["run_id"]
    assert (outside / run / "Z_integrator/FINAL_REPORT.txt").is_file()
    assert (outside / "factory_ledger.jsonl").is_file()
    assert not (repo / "tools").exists()  # nothing in the repository
    for args in (
        ("runs",),
        ("print-report", "--run-id", "latest"),
        ("ledger-replay", "--run-id", run),
    ):
        again = run_cli("--repo", str(repo), *args, env=env)
        assert again.returncode == 0, (args, again.stderr)
    doc = run_cli("--repo", str(repo), "doctor", "--json", env=env)
    checks = {c["name"]: c for c in json.loads(doc.stdout)["checks"]}
    assert checks["ledger-clean"]["level"] == "OK"
    assert checks["runs-folder"]["level"] == "OK"
    # The guarded writer's link rules hold there too: a run folder that is a link is refused.
    os.symlink(str(tmp_path), outside / "factory_x")
    linked = run_cli("--repo", str(repo), "print-report", "--run-id", "factory_x", env=env)
    assert linked.returncode == 3
    assert linked.stderr.strip() == (
        f"factory: error: run factory_x: the run folder {outside}/factory_x is a symbolic "
        "link; a run is never read or written through one (remove the link)"
    )


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("{repo}/inside", "is inside the repository: write it relative"),
        ("{tmp}/a/../b", "is not normalised"),
    ],
)
def test_an_absolute_runs_folder_is_checked(tmp_path: Path, where: str, said: str) -> None:
    repo = make_repo(tmp_path / "repo")
    value = where.format(repo=repo, tmp=tmp_path)
    env = {"FACTORY_PATHS__RUNS_DIR": value}
    res = run_cli("--repo", str(repo), "oneshot", "--dry-run", env=env)
    assert res.returncode in (2, 3)
    assert said in res.stderr + res.stdout and "Traceback" not in res.stderr


def test_doctor_warns_when_git_clean_x_would_delete_the_ledger(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    assert run_cli("--repo", str(repo), "oneshot", "--dry-run").returncode == 0
    doc = run_cli("--repo", str(repo), "doctor", "--json")
    check = {c["name"]: c for c in json.loads(doc.stdout)["checks"]}["ledger-clean"]
    assert check["level"] == "WARN" and "git clean -x" in check["detail"]
    assert "paths.runs_dir" in check["fix"] and "outside the repository" in check["fix"]


def test_a_config_file_of_the_repository_named_by_config_is_protected(tmp_path: Path) -> None:
    from tests.support.factory import make_patch, rules, set_bundle

    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "factory.json": "{}\n"})
    base = ("--repo", str(repo), "--config", str(repo / "factory.json"), "--now", NOW)
    shown = _show(repo, "--config", str(repo / "factory.json"))
    assert "factory.json" in shown["config"]["security"]["protected_paths"]
    launched = run_cli(*base, "launch", "--dry-run", "--json")
    assert launched.returncode == 0, launched.stderr
    run = json.loads(launched.stdout)["run_id"]
    # D's default scope takes root *.json: only the protection stops a worker's new checks.
    set_bundle(repo, run, "D", make_patch(repo, {"factory.json": '{"checks": {"required": []}}\n'}))
    res = run_cli(*base, "bundle-validate", "--run-id", run, "--json")
    assert res.returncode == 3, res.stderr
    assert "protected-path" in rules(json.loads(res.stdout))


def _validate_with(repo: Path, config: Path, changes: dict[str, str | None], *launch: str) -> Any:
    """Launch with ``--config config``, give worker D a patch (after ``changes``: a str is a
    file's text, None removes; '->X' makes a link to X), return bundle-validate's result."""
    import subprocess

    from tests.support.factory import set_bundle

    base = ("--repo", str(repo), "--config", str(config), "--now", NOW)
    launched = run_cli(*base, "launch", "--dry-run", "--json", *launch)
    assert launched.returncode == 0, launched.stderr
    run = json.loads(launched.stdout)["run_id"]
    for rel, content in changes.items():
        path = repo / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        if content is None:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith("->"):
            os.symlink(content[2:], path)
        else:
            path.write_text(content)
    git(repo, "add", "-A")
    patch = subprocess.run(
        ["git", "-C", str(repo), "diff", "--cached", "--binary", "--full-index", "HEAD"],
        capture_output=True,
        check=True,
    ).stdout
    git(repo, "reset", "-q", "--hard", "HEAD")
    git(repo, "clean", "-qfd", "--", "evil")
    set_bundle(repo, run, "D", patch)
    return run_cli(*base, "bundle-validate", "--run-id", run, "--json")


def test_a_config_file_whose_name_holds_glob_characters_is_protected_as_spelled(
    tmp_path: Path,
) -> None:
    from tests.support.factory import rules

    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "conf[1].json": "{}\n"})
    res = _validate_with(
        repo, repo / "conf[1].json", {"conf[1].json": '{"checks": {"required": []}}\n'}
    )
    assert res.returncode == 3, res.stdout + res.stderr
    assert "protected-path" in rules(json.loads(res.stdout))


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links")
def test_a_config_file_reached_through_a_link_of_the_repository_cannot_be_re_pointed(
    tmp_path: Path,
) -> None:
    from tests.support.factory import rules

    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "real/factory.json": "{}\n"})
    os.symlink("real", repo / "cfg")
    git(repo, "add", "cfg")
    git(repo, "commit", "-qm", "cfg link")
    # D re-points the link at a folder of its own whose factory.json empties the checks.
    changes: dict[str, str | None] = {
        "cfg": "->evil",
        "evil/factory.json": '{"checks": {"required": []}}\n',
    }
    from tests.support.factory import write_plan

    # D may change anything, links included: only the protection stops it.
    plan = write_plan(
        tmp_path / "plan.json", [{"id": "D", "task": "all", "allow": ["**"], "special": ["**"]}]
    )
    res = _validate_with(repo, repo / "cfg" / "factory.json", changes, "--plan", str(plan))
    assert res.returncode == 3, res.stdout + res.stderr
    assert "protected-path" in rules(json.loads(res.stdout))
