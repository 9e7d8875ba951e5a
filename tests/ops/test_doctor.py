"""doctor: one OK/WARN/FAIL line per check with a fix; exit 0 without FAIL, 3 with one."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.repos import run_cli
from tests.support.scratch import RUNS_REL, factory, make_repo, scratch_env
from tools.codex.factory.infra import jsonio

CONFIG_REL = "tools/codex/factory/factory.config.json"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return scratch_env(tmp_path / "home")


def lines_of(out: str) -> dict[str, str]:
    """{check name: whole line} for the OK/WARN/FAIL lines."""
    found = {}
    for ln in out.splitlines():
        level, _, rest = ln.partition(" ")
        if level in ("OK", "WARN", "FAIL"):
            found[rest.strip().split(":", 1)[0]] = ln
    return found


def doctor_json(repo: Path, env: dict[str, str], code: int) -> dict[str, Any]:
    res = factory(repo, env, "doctor", "--json")
    assert res.returncode == code, res.stdout + res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def test_healthy_repository_has_no_fail(tmp_path: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", env)
    assert factory(repo, env, "oneshot", "--base-ref", "HEAD", "--dry-run").returncode == 0
    res = factory(repo, env, "doctor")
    assert res.returncode == 0, res.stdout
    found = lines_of(res.stdout)
    for name in (
        "python",
        "dependency-click",
        "dependency-jsonschema",
        "dependency-orjson",
        "dependency-filelock",
        "git",
        "git-features",
        "windows-long-paths",
        "repository",
        "config",
        "base-ref",
        "runs-folder",
        "ledger",
        "agents",
    ):
        assert found[name].startswith("OK"), found.get(name)
    assert "free-disk" in found
    assert "not Windows" in found["windows-long-paths"]
    assert "self-test" in res.stdout
    data = doctor_json(repo, env, 0)
    assert data["status"] == "PASS" and data["counts"]["FAIL"] == 0
    assert {c["level"] for c in data["checks"]} <= {"OK", "WARN"}
    assert all(set(c) == {"name", "level", "ok", "detail", "fix"} for c in data["checks"])


def test_outside_a_repository_fails_the_repo_check_without_crashing(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    res = run_cli("doctor", cwd=plain)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    found = lines_of(res.stdout)
    assert found["repository"].startswith("FAIL")
    assert "fix: cd into your repository" in found["repository"]
    assert found["python"].startswith("OK") and found["git"].startswith("OK")
    assert found["not-checked"].startswith("WARN") and "config" in found["not-checked"]
    assert sum(1 for ln in res.stdout.splitlines() if ln.startswith("FAIL")) == 1
    assert "self-test" in res.stdout


def test_torn_ledger_fails_with_the_repair_fix(tmp_path: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", env)
    assert factory(repo, env, "oneshot", "--base-ref", "HEAD", "--dry-run").returncode == 0
    with open(repo / RUNS_REL / "factory_ledger.jsonl", "ab") as fh:
        fh.write(b'{"event_type":"stage.sta')
    res = factory(repo, env, "doctor")
    assert res.returncode == 3
    line = lines_of(res.stdout)["ledger"]
    assert line.startswith("FAIL ledger: torn tail: 24 bytes")
    assert "fix: run `factory ledger repair`" in line
    assert factory(repo, env, "ledger", "repair").returncode == 0
    assert factory(repo, env, "doctor").returncode == 0


def test_an_edited_last_line_fails(tmp_path: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", env)
    assert factory(repo, env, "oneshot", "--base-ref", "HEAD", "--dry-run").returncode == 0
    path = repo / RUNS_REL / "factory_ledger.jsonl"
    data = path.read_bytes()
    cut = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[:cut] + data[cut:].replace(b'"actor":"', b'"actor":"X', 1))
    last = json.loads(data[cut:])["seq"]
    line = lines_of(factory(repo, env, "doctor").stdout)["ledger"]
    assert line.startswith(f"FAIL ledger: seq {last}: hash does not match the last line")
    assert "ledger-replay" in line


def test_a_rewritten_ledger_fails_without_reading_every_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """doctor judges the end (its cost must not grow with the ledger): lines that moved under
    the run index (an edit that changed a length, a re-chained rewrite) are caught there; an
    edit of the same length deep inside is `ledger verify`'s to find, and it names the seq."""
    repo = make_repo(tmp_path / "repo", env)
    assert factory(repo, env, "oneshot", "--base-ref", "HEAD", "--dry-run").returncode == 0
    path = repo / RUNS_REL / "factory_ledger.jsonl"
    original = path.read_bytes()
    path.write_bytes(original.replace(b'"name":"git"', b'"name":"gitx"', 1))
    last = len(original.splitlines())  # the index's last line moved by one byte
    line = lines_of(factory(repo, env, "doctor").stdout)["ledger"]
    assert line.startswith(f"FAIL ledger: ledger factory_ledger.jsonl: its line seq {last} is not")
    assert "factory ledger verify" in line

    path.write_bytes(original.replace(b'"name":"git"', b'"name":"gut"', 1))
    assert lines_of(factory(repo, env, "doctor").stdout)["ledger"].startswith("OK ")
    res = factory(repo, env, "ledger", "verify")
    assert res.returncode == 3 and "seq 2" in res.stdout + res.stderr


@pytest.mark.parametrize(
    ("doc", "expect"),
    [
        ({"run": {"kind": "no spaces allowed"}}, "run.kind"),
        ({"checks": {"required": [{"name": "x"}]}}, "argv"),
        ({"nosuch": {}}, "nosuch"),
    ],
)
def test_bad_config_fails_with_the_key_and_a_fix(
    tmp_path: Path, env: dict[str, str], doc: dict[str, Any], expect: str
) -> None:
    repo = make_repo(tmp_path / "repo", env)
    (repo / CONFIG_REL).parent.mkdir(parents=True)
    (repo / CONFIG_REL).write_bytes(jsonio.pretty(doc))
    res = factory(repo, env, "doctor")
    assert res.returncode == 3 and "Traceback" not in res.stderr
    found = lines_of(res.stdout)
    assert found["config"].startswith("FAIL config:") and expect in found["config"]
    assert "fix: fix the named key" in found["config"]
    assert found["not-checked"].startswith("WARN") and "ledger" in found["not-checked"]


def test_bad_env_variable_is_a_config_fail(tmp_path: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", env)
    res = factory(repo, {**env, "FACTORY_RUN__NOPE": "1"}, "doctor")
    assert res.returncode == 3
    assert "FACTORY_RUN__NOPE" in lines_of(res.stdout)["config"]


def test_config_origins_are_listed(tmp_path: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", env)
    (repo / CONFIG_REL).parent.mkdir(parents=True)
    (repo / CONFIG_REL).write_bytes(jsonio.pretty({"run": {"kind": "nightly"}}))
    res = factory(repo, {**env, "FACTORY_RUN__KEEP_SANDBOX": "false"}, "doctor")
    line = lines_of(res.stdout)["config"]
    assert f"1 from file:{CONFIG_REL}" in line and "1 from env:FACTORY_RUN__KEEP_SANDBOX" in line


def test_missing_agent_command_is_only_a_warning(tmp_path: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", env)
    (repo / CONFIG_REL).parent.mkdir(parents=True)
    (repo / CONFIG_REL).write_bytes(
        jsonio.pretty(
            {
                "workers": {
                    "agent": {"preset": "codex", "argv": ["no-such-agent-binary-7f3a", "exec"]},
                    "agents": {"B": {"preset": "script", "argv": ["git", "--version"]}},
                }
            }
        )
    )
    res = factory(repo, env, "doctor")
    assert res.returncode == 0, res.stdout
    found = lines_of(res.stdout)
    assert (
        found["agent-workers.agent"].startswith("WARN")
        and "no-such-agent-binary-7f3a" in found["agent-workers.agent"]
    )
    assert "fix: install no-such-agent-binary-7f3a" in found["agent-workers.agent"]
    assert found["agent-workers.agents.B"].startswith("OK")


def test_the_reviewer_agent_is_probed_too(tmp_path: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", env)
    (repo / CONFIG_REL).parent.mkdir(parents=True)
    agent = {"preset": "claude", "argv": ["no-such-reviewer-binary-91c2", "-p"]}
    (repo / CONFIG_REL).write_bytes(jsonio.pretty({"review": {"agent": agent}}))
    res = factory(repo, env, "doctor")
    assert res.returncode == 0, res.stdout
    line = lines_of(res.stdout)["agent-review.agent"]
    assert line.startswith("WARN") and "no-such-reviewer-binary-91c2" in line


def test_doctor_and_launch_judge_an_agent_with_one_probe(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The probe launch refuses a run on is the one doctor shows: same words, same fix; and a
    ``{python}`` agent is found (its placeholder filled as launch fills it)."""
    repo = make_repo(tmp_path / "repo", env)
    (repo / CONFIG_REL).parent.mkdir(parents=True)
    (repo / CONFIG_REL).write_bytes(
        jsonio.pretty(
            {
                "workers": {
                    "agent": {"preset": "aider", "argv": ["no-such-agent-3c9d", "{prompt_file}"]},
                    "agents": {"C": {"preset": "script", "argv": ["{python}", "agent.py"]}},
                }
            }
        )
    )
    checks = {c["name"]: c for c in doctor_json(repo, env, 0)["checks"]}
    missing = checks["agent-workers.agent"]
    assert missing["level"] == "WARN"
    assert (
        missing["detail"] == "config workers.agent.argv[0]: 'no-such-agent-3c9d' not found on PATH"
    )
    assert missing["fix"] == (
        "install no-such-agent-3c9d or put it on PATH, "
        "or set config workers.agent.argv[0] to its full path"
    )
    assert checks["agent-workers.agents.C"]["level"] == "OK"
    res = factory(repo, env, "launch", "--workers", "A")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == (
        f"factory: error: {missing['detail']}; fix: {missing['fix']}"
    )


def test_repository_without_commits_fails_the_base_ref(tmp_path: Path, env: dict[str, str]) -> None:
    from tests.support.repos import git

    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q")
    res = factory(repo, env, "doctor")
    assert res.returncode == 3
    line = lines_of(res.stdout)["base-ref"]
    assert line.startswith("FAIL base-ref:") and "fix: commit at least once" in line


def test_leftover_worktrees_are_a_warning_with_the_clean_fix(
    tmp_path: Path, env: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo", env)
    res = factory(repo, env, "launch", "--base-ref", "HEAD", "--run-id", "left-1", "--workers", "A")
    assert res.returncode == 0, res.stderr
    busy = lines_of(factory(repo, env, "doctor").stdout)[
        "worktrees"
    ]  # an interactive worker at work
    assert (
        busy.startswith("OK   worktrees: no leftover")
        and "1 in use by run(s) still in progress (left-1" in busy
    )
    assert (
        factory(repo, env, "bundle-collect", "--run-id", "left-1").returncode == 0
    )  # collected, run not finished
    busy = lines_of(factory(repo, env, "doctor").stdout)[
        "worktrees"
    ]  # `clean` would refuse it: still in use
    assert busy.startswith("OK") and "in use" in busy and "clean --run-id left-1 --force" in busy
    assert factory(repo, env, "bundle-validate", "--run-id", "left-1").returncode == 0
    assert factory(repo, env, "integrate", "--run-id", "left-1", "--keep-worktrees").returncode == 0
    out = factory(repo, env, "doctor")
    assert out.returncode == 0
    line = lines_of(out.stdout)["worktrees"]
    assert (
        line.startswith("WARN worktrees: 1 leftover worker worktree(s)/branch(es)")
        and "left-1" in line
    )
    assert "fix: run `factory clean`" in line
    assert (
        factory(repo, env, "clean", "--run-id", "left-1").returncode == 0
    )  # finished, all collected: no --force
    assert lines_of(factory(repo, env, "doctor").stdout)["worktrees"].startswith("OK")


@pytest.mark.skipif(os.name == "nt", reason="a POSIX shell wrapper stands in for a git build")
def test_git_features_probe_only_what_the_factory_uses(tmp_path: Path, env: dict[str, str]) -> None:
    """A git without `git sparse-checkout` (never run by the factory) is fine."""
    real_git = shutil.which("git")
    assert real_git is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_bytes(
        b'#!/bin/sh\nfor a in "$@"; do [ "$a" = sparse-checkout ] && { echo "git: \'sparse-checkout\' is not a '
        b'git command." >&2; exit 1; }; done\nexec ' + real_git.encode() + b' "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {**env, "PATH": str(bin_dir) + os.pathsep + env.get("PATH", "")}
    repo = make_repo(tmp_path / "repo", env)
    res = factory(repo, env, "doctor")
    line = lines_of(res.stdout)["git-features"]
    assert line.startswith("OK"), line
    assert res.returncode == 0, res.stdout
