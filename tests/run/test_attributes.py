"""Checks read git attributes from the base commit (``checks.attributes = base``): a patch's own
``.gitattributes`` must not switch a check off. Git honours ``GIT_ATTR_SOURCE`` from 2.42 on;
on an older git (this machine's may be one) such a patch is BLOCKED at validation, measured
rather than assumed, recorded so replay agrees, and said by doctor and preflight."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.factory import launch_dry, read_json, run_dir, write_config, write_json
from tests.support.repos import PINNED, git, make_repo, run_cli
from tools.codex.factory.infra import gitops

FILES = {"README.md": "hello\n", "docs/guide.md": "guide\n"}
ATTACK = {".gitattributes": "* -whitespace\n", "docs/guide.md": "guide   \n"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--repo", str(repo), "--now", PINNED, *args)


def bundle(repo: Path, tmp_path: Path, changes: dict[str, str]) -> str:
    """A dry run whose one worker (may touch anything, .gitattributes included) hands back
    ``changes`` as a real `git diff`."""
    plan = tmp_path / "plan.json"
    worker = {"id": "A", "task": "all", "allow": ["**"], "special": [".gitattributes"]}
    write_json(plan, {"schema_version": 1, "workers": [worker]})
    run_id = launch_dry(repo, "--plan", str(plan))
    for rel, text in changes.items():
        (repo / rel).write_text(text, encoding="utf-8")
    git(repo, "add", "--", *changes)
    patch = subprocess.run(
        ["git", "-C", str(repo), "diff", "--cached", "--full-index", "HEAD"],
        capture_output=True,
        check=True,
    ).stdout
    git(repo, "reset", "-q", "--hard", "HEAD")
    (repo / ".gitattributes").unlink(missing_ok=True)
    folder = run_dir(repo, run_id) / "A_worker"
    (folder / "DIFF.patch").write_bytes(patch)
    write_json(folder / "FILES_CHANGED.json", {"schema_version": 1, "files": sorted(changes)})
    return run_id


def validate_then_integrate(repo: Path, run_id: str) -> tuple[int, str]:
    """The run's outcome: validation's when it blocks, else integration's."""
    res = cli(repo, "bundle-validate", "--run-id", run_id)
    if res.returncode != 0:
        return res.returncode, res.stdout + res.stderr
    res = cli(repo, "integrate", "--run-id", run_id)
    return res.returncode, res.stdout + res.stderr


def test_the_probe_measures_what_the_version_says() -> None:
    assert gitops.honours_attr_source() == (gitops.version()[:2] >= gitops.ATTR_SOURCE_VERSION)


def test_a_trailing_space_alone_is_blocked_by_the_whitespace_check(
    repo: Path, tmp_path: Path
) -> None:
    run_id = bundle(repo, tmp_path, {"docs/guide.md": ATTACK["docs/guide.md"]})
    code, out = validate_then_integrate(repo, run_id)
    assert code == 3 and "diff-whitespace" in out, out


def test_a_gitattributes_switching_the_check_off_is_blocked(repo: Path, tmp_path: Path) -> None:
    """`* -whitespace` plus a trailing space: BLOCKED whatever this git is, by validation when
    git cannot read attributes from the base, else by the check reading the base's."""
    run_id = bundle(repo, tmp_path, ATTACK)
    code, out = validate_then_integrate(repo, run_id)
    assert code == 3, out
    doc = read_json(run_dir(repo, run_id) / "VALIDATION.json")
    rules = {(f["rule"], f["path"]) for f in doc["findings"]}
    if gitops.honours_attr_source():
        assert "diff-whitespace" in out
    else:
        assert rules == {("gitattributes-unchecked", ".gitattributes")}
        message = doc["findings"][0]["message"]
        assert "2.42" in message and "checks.attributes = candidate" in message
        decided = [
            json.loads(line)
            for line in (repo / "tools/codex/runs/factory_ledger.jsonl").read_text().splitlines()
            if '"validation.decided"' in line
        ]
        assert decided[-1]["payload"]["git_attr_source"] is False
        replay = cli(repo, "ledger-replay", "--run-id", run_id)
        assert replay.returncode == 0 and "REPLAY OK" in replay.stdout, replay.stdout


def test_with_candidate_attributes_the_operator_accepts_the_patch_s_own(
    repo: Path, tmp_path: Path
) -> None:
    write_config(repo, {"checks": {"attributes": "candidate"}})
    run_id = bundle(repo, tmp_path, ATTACK)
    code, out = validate_then_integrate(repo, run_id)
    assert code == 0, out


def test_checks_get_the_base_commit_as_attribute_source(repo: Path, tmp_path: Path) -> None:
    """Whatever git does with it, the checks' environment names the base commit."""
    probe = "import os, sys; sys.exit(0 if os.environ.get('GIT_ATTR_SOURCE') == sys.argv[1] else 5)"
    write_config(
        repo,
        {
            "checks": {
                "required": [
                    {"name": "attr-src", "argv": ["{python}", "-c", probe, "{base_commit}"]}
                ]
            }
        },
    )
    run_id = bundle(repo, tmp_path, {"docs/guide.md": "guide, longer\n"})
    code, out = validate_then_integrate(repo, run_id)
    assert code == 0, out


@pytest.mark.parametrize("command", ["doctor", "preflight"])
def test_doctor_and_preflight_say_whether_attributes_come_from_the_base(
    repo: Path, command: str
) -> None:
    res = cli(repo, command)
    line = next(x for x in res.stdout.splitlines() if " git-attributes: " in x)
    if gitops.honours_attr_source():
        assert line.startswith("OK")
    else:
        assert line.startswith("WARN") and "GIT_ATTR_SOURCE" in line and "2.42" in line
        assert "checks.attributes to candidate" in line
    write_config(repo, {"checks": {"attributes": "candidate"}})
    res = cli(repo, command)
    line = next(x for x in res.stdout.splitlines() if " git-attributes: " in x)
    assert line.startswith("OK") and "candidate" in line


def two_workers(repo: Path, tmp_path: Path) -> str:
    """Worker A may add `.gitattributes` (its scope and `special`) and adds `* -whitespace`;
    worker B, in docs/, adds a trailing space. Each hands back a real `git diff`."""
    plan = tmp_path / "plan.json"
    workers = [
        {"id": "A", "task": "attrs", "allow": [".gitattributes"], "special": [".gitattributes"]},
        {"id": "B", "task": "docs", "allow": ["docs/**"]},
    ]
    write_json(plan, {"schema_version": 1, "workers": workers})
    run_id = launch_dry(repo, "--plan", str(plan), "--workers", "A,B")
    for worker, rel in (("A", ".gitattributes"), ("B", "docs/guide.md")):
        (repo / rel).write_text(ATTACK[rel], encoding="utf-8")
        git(repo, "add", "--", rel)
        patch = subprocess.run(
            ["git", "-C", str(repo), "diff", "--cached", "--full-index", "HEAD"],
            capture_output=True,
            check=True,
        ).stdout
        git(repo, "reset", "-q", "--hard", "HEAD")
        (repo / ".gitattributes").unlink(missing_ok=True)
        folder = run_dir(repo, run_id) / f"{worker}_worker"
        (folder / "DIFF.patch").write_bytes(patch)
        write_json(folder / "FILES_CHANGED.json", {"schema_version": 1, "files": [rel]})
    return run_id


def test_one_worker_s_gitattributes_cannot_switch_off_another_s_check(
    repo: Path, tmp_path: Path
) -> None:
    """A's `* -whitespace` never lets B's trailing space through: BLOCKED as without it."""
    run_id = two_workers(repo, tmp_path)
    res = cli(repo, "bundle-validate", "--run-id", run_id)
    doc = read_json(run_dir(repo, run_id) / "VALIDATION.json")
    found = {(f["worker"], f["path"], f["rule"]) for f in doc["findings"]}
    if gitops.honours_attr_source():
        assert res.returncode == 0, res.stdout + res.stderr
        res = cli(repo, "integrate", "--run-id", run_id)
        assert res.returncode == 3, res.stdout + res.stderr
        status = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")
        assert "diff-whitespace" in " ".join(status["reasons"])
        log = run_dir(repo, run_id) / "Z_integrator/LOGS/check-diff-whitespace.stdout.log"
        assert "docs/guide.md" in log.read_text(encoding="utf-8")
    else:
        # This git cannot read attributes from the base: A's change itself is refused, and
        # only A's; B is judged on its own bytes.
        assert res.returncode == 3, res.stdout + res.stderr
        assert found == {("A", ".gitattributes", "gitattributes-unchecked")}
        assert doc["verdicts"] == {"A": "BLOCKED", "B": "PASS"}
        # Without A, B's check runs in the sandbox and blocks B's trailing space.
        assert cli(repo, "bundle-validate", "--run-id", run_id, "--workers", "B").returncode == 0
        res = cli(repo, "integrate", "--run-id", run_id, "--workers", "B")
        assert res.returncode == 3, res.stdout + res.stderr
        status = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")
        assert "diff-whitespace" in " ".join(status["reasons"])
        log = run_dir(repo, run_id) / "Z_integrator/LOGS/check-diff-whitespace.stdout.log"
        assert "docs/guide.md" in log.read_text(encoding="utf-8")
