"""Integration end to end: PASS, BLOCKED by check/timeout/apply, FAIL, write policy, run lock."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.factory import (
    launch_dry,
    make_patch,
    read_json,
    run_dir,
    set_bundle,
    touched_by_git,
    write_config,
)
from tests.support.repos import PINNED, ROOT, git, make_repo, pid_alive, run_cli, snapshot
from tools.codex.factory.infra import schemas

FILES = {
    "README.md": "hello\n",
    "src/app.py": "print('app')\n",
    "tests/test_app.py": "def test_ok():\n    assert True\n",
    "docs/guide.md": "guide\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def integrate(
    repo: Path, run_id: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "--repo",
        str(repo),
        "--now",
        PINNED,
        "integrate",
        "--run-id",
        run_id,
        "--json",
        *extra,
        env=env,
    )


def validated_run(repo: Path, patches: dict[str, bytes]) -> str:
    run_id = launch_dry(repo)
    for worker, patch in patches.items():
        set_bundle(repo, run_id, worker, patch)
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr
    return run_id


def assert_agree(
    repo: Path, run_id: str, res: subprocess.CompletedProcess[str], status: str, code: int
) -> None:
    """FINAL_REPORT.txt, STATUS.json and the exit code tell the same story."""
    z = run_dir(repo, run_id) / "Z_integrator"
    assert res.returncode == code, res.stdout + res.stderr
    doc = read_json(z / "STATUS.json")
    assert doc["status"] == status
    assert schemas.errors("integrator_status", doc) == []
    report = (z / "FINAL_REPORT.txt").read_text(encoding="utf-8")
    assert f"STATUS:      {status}\n" in report
    assert report.rstrip().splitlines()[-1].startswith("ledger head: seq=")
    if res.stdout.strip().startswith("{"):
        assert json.loads(res.stdout)["status"] == status


def test_two_disjoint_workers_pass_and_diff_reproduces_merge(repo: Path, tmp_path: Path) -> None:
    a = make_patch(repo, {"src/app.py": "print('app v2')\n", "src/new.py": "N = 1\n"})
    b = make_patch(
        repo,
        {
            "tests/test_app.py": FILES["tests/test_app.py"]
            + "\ndef test_more():\n    assert 2 + 2 == 4\n"
        },
    )
    run_id = validated_run(repo, {"A": a, "B": b})
    res = integrate(repo, run_id)
    assert_agree(repo, run_id, res, "PASS", 0)
    z = run_dir(repo, run_id) / "Z_integrator"
    assert read_json(z / "FILES_CHANGED.json")["files"] == [
        "src/app.py",
        "src/new.py",
        "tests/test_app.py",
    ]
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "apply", "--index", str(z / "DIFF.patch"))
    assert (clone / "src/app.py").read_text() == "print('app v2')\n"
    assert (clone / "src/new.py").read_text() == "N = 1\n"
    assert "test_more" in (clone / "tests/test_app.py").read_text()
    merge_plan = (z / "MERGE_PLAN.md").read_text()
    assert merge_plan.index("A_worker") < merge_plan.index("B_worker")
    run = run_dir(repo, run_id)
    ok = subprocess.run(
        [
            "sha256sum",
            "-c",
            "--quiet",
            *[f"attestations/{n}" for n in ("bundles.sha256", "ledger.sha256", "report.sha256")],
        ],
        cwd=run,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert not (run / "sandbox").exists()


def test_failing_required_check_blocks(repo: Path) -> None:
    write_config(
        repo,
        {
            "checks": {
                "required": [
                    {
                        "name": "unit",
                        "argv": ["{python}", "-c", "import sys; print('boom'); sys.exit(4)"],
                    }
                ]
            }
        },
    )
    run_id = validated_run(repo, {"A": make_patch(repo, {"src/app.py": "x = 1\n"})})
    res = integrate(repo, run_id)
    assert_agree(repo, run_id, res, "BLOCKED", 3)
    doc = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")
    assert doc["checks"][0]["rc"] == 4
    assert any("unit" in r and "rc=4" in r for r in doc["reasons"])
    log = run_dir(repo, run_id) / "Z_integrator" / "LOGS" / "check-unit.stdout.log"
    assert log.read_text().strip() == "boom"
    index = read_json(run_dir(repo, run_id) / "Z_integrator" / "LOGS" / "INDEX.json")
    assert "check-unit.stdout.log" in [e["path"] for e in index["logs"]]


def test_advisory_check_never_blocks(repo: Path) -> None:
    write_config(
        repo,
        {
            "checks": {
                "required": [],
                "advisory": [{"name": "lint", "argv": ["{python}", "-c", "raise SystemExit(2)"]}],
            }
        },
    )
    run_id = validated_run(repo, {})
    res = integrate(repo, run_id)
    assert_agree(repo, run_id, res, "PASS", 0)
    report = (run_dir(repo, run_id) / "Z_integrator" / "FINAL_REPORT.txt").read_text()
    assert "[advisory] lint: rc=2" in report


def test_check_runs_in_sandbox_with_merged_change(repo: Path) -> None:
    probe = "import pathlib, sys; sys.exit(0 if pathlib.Path('src/new.py').read_text() == 'N = 1\\n' else 9)"
    write_config(
        repo, {"checks": {"required": [{"name": "sees-merge", "argv": ["{python}", "-c", probe]}]}}
    )
    run_id = validated_run(repo, {"A": make_patch(repo, {"src/new.py": "N = 1\n"})})
    assert_agree(repo, run_id, integrate(repo, run_id), "PASS", 0)


def test_check_cannot_reach_user_repo_through_git(repo: Path) -> None:
    # Git run by a check resolves to the sandbox's own repository; what it writes stays there.
    probe = (
        "import os, subprocess, sys; "
        "gd = subprocess.run(['git', 'rev-parse', '--absolute-git-dir'], capture_output=True, text=True).stdout.strip(); "
        "ok = os.path.realpath(gd) == os.path.realpath(os.path.join(os.getcwd(), '.git')); "
        "subprocess.run(['git', 'branch', 'evil-from-check'], check=True); "
        "subprocess.run(['git', 'commit', '-q', '--allow-empty', '-m', 'evil'], check=True); "
        "sys.exit(0 if ok else 7)"
    )
    write_config(
        repo, {"checks": {"required": [{"name": "isolated", "argv": ["{python}", "-c", probe]}]}}
    )
    run_id = validated_run(repo, {})
    before = snapshot(repo)
    res = integrate(repo, run_id, env={"GIT_DIR": str(repo / ".git"), "GIT_WORK_TREE": str(repo)})
    assert_agree(repo, run_id, res, "PASS", 0)
    assert snapshot(repo) == before
    assert "evil-from-check" not in git(repo, "branch", "--list")
    # Only the factory's own: the ceiling, and attributes from the base commit.
    env_probe = "import os, sys; sys.exit(1 if any(k.startswith('GIT_') and k not in ('GIT_CEILING_DIRECTORIES', 'GIT_ATTR_SOURCE') for k in os.environ) else 0)"
    write_config(
        repo,
        {"checks": {"required": [{"name": "clean-env", "argv": ["{python}", "-c", env_probe]}]}},
    )
    run2 = validated_run(repo, {})
    assert_agree(
        repo, run2, integrate(repo, run2, env={"GIT_TRACE": "0", "GIT_AUTHOR_NAME": "x"}), "PASS", 0
    )


def test_check_timeout_blocks_and_kills_the_tree(repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); open({str(marker)!r}, 'w').write(str(p.pid)); "
        "time.sleep(60)"
    )
    write_config(
        repo,
        {
            "checks": {
                "required": [{"name": "slow", "argv": ["{python}", "-c", script], "timeout_s": 2}]
            }
        },
    )
    run_id = validated_run(repo, {})
    res = integrate(repo, run_id)
    assert_agree(repo, run_id, res, "BLOCKED", 3)
    doc = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")
    assert doc["checks"][0]["timed_out"] is True
    assert any("timed out" in r for r in doc["reasons"])
    pid = int(marker.read_text())
    assert not pid_alive(pid)


def test_patch_that_does_not_apply_blocks_naming_worker_and_file(repo: Path) -> None:
    run_id = launch_dry(repo)
    patch = make_patch(repo, {"src/app.py": "changed\n"}).replace(
        b"-print('app')", b"-print('not what is there')"
    )
    set_bundle(repo, run_id, "A", patch)
    assert run_cli("--repo", str(repo), "bundle-validate", "--run-id", run_id).returncode == 0
    res = integrate(repo, run_id)
    assert_agree(repo, run_id, res, "BLOCKED", 3)
    reasons = " ".join(read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")["reasons"])
    assert "A_worker" in reasons and "src/app.py" in reasons


def test_integrate_refuses_without_validation_or_after_a_change(repo: Path) -> None:
    run_id = launch_dry(repo)
    res = integrate(repo, run_id)
    assert_agree(repo, run_id, res, "BLOCKED", 3)
    assert "bundle-validate has not run" in " ".join(
        read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")["reasons"]
    )
    assert run_cli("--repo", str(repo), "bundle-validate", "--run-id", run_id).returncode == 0
    (run_dir(repo, run_id) / "C_worker" / "SUMMARY.md").write_text("changed after validation\n")
    res = integrate(repo, run_id)
    assert_agree(repo, run_id, res, "BLOCKED", 3)
    assert "C_worker changed since it was validated" in " ".join(
        read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")["reasons"]
    )


def test_integrate_a_different_selection_than_validated_blocks(repo: Path) -> None:
    run_id = validated_run(repo, {})
    res = integrate(repo, run_id, "--workers", "A,B")
    assert_agree(repo, run_id, res, "BLOCKED", 3)


def test_git_missing_mid_run_is_fail(repo: Path, tmp_path: Path) -> None:
    run_id = validated_run(repo, {"A": make_patch(repo, {"src/app.py": "x\n"})})
    empty_bin = tmp_path / "nogit"
    empty_bin.mkdir()
    res = integrate(repo, run_id, env={"PATH": str(empty_bin)})
    assert_agree(repo, run_id, res, "FAIL", 1)
    doc = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")
    assert any("not found on PATH" in r for r in doc["reasons"])
    assert "Traceback" not in res.stderr


def test_write_outside_run_folder_is_refused_and_reported(repo: Path, tmp_path: Path) -> None:
    run_id = validated_run(repo, {})
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    link = run_dir(repo, run_id) / "Z_integrator" / "DIFF.patch"
    link.symlink_to(outside)
    res = integrate(repo, run_id)
    assert_agree(repo, run_id, res, "BLOCKED", 3)
    assert outside.read_text() == "precious\n"
    doc = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")
    assert [v["path"] for v in doc["policy_violations"]] == ["Z_integrator/DIFF.patch"]
    report = (run_dir(repo, run_id) / "Z_integrator" / "FINAL_REPORT.txt").read_text()
    assert "write to 'Z_integrator/DIFF.patch' refused" in report


def test_second_integrate_is_blocked_at_once(repo: Path) -> None:
    from tools.codex.factory.infra.locks import ProcessLock

    run_id = validated_run(repo, {})
    lock = ProcessLock(run_dir(repo, run_id) / "locks" / "run.lock", 0, "test holder")
    lock.acquire()
    try:
        res = run_cli("--repo", str(repo), "integrate", "--run-id", run_id, timeout=20)
    finally:
        lock.release()
        lock.close()
    assert res.returncode == 3
    assert "held by another process" in res.stderr
    assert not (run_dir(repo, run_id) / "Z_integrator" / "STATUS.json").exists()


def test_user_state_is_never_touched(repo: Path) -> None:
    (repo / "README.md").write_text("dirty working tree\n")
    (repo / "docs/guide.md").write_text("staged\n")
    git(repo, "add", "docs/guide.md")
    (repo / "scratch.txt").write_text("untracked\n")
    git(repo, "stash", "push", "-q", "--keep-index", "-m", "keep me")
    (repo / "README.md").write_text("dirty again\n")
    git(repo, "branch", "feature")
    before = snapshot(repo)
    files_before = {
        p: p.read_bytes()
        for p in repo.rglob("*")
        if p.is_file() and ".git" not in p.parts and "runs" not in p.parts
    }
    res = run_cli("--repo", str(repo), "oneshot", "--dry-run")
    assert res.returncode == 0, res.stdout + res.stderr
    assert snapshot(repo) == before
    files_after = {
        p: p.read_bytes()
        for p in repo.rglob("*")
        if p.is_file() and ".git" not in p.parts and "runs" not in p.parts
    }
    assert files_after == files_before
    assert git(repo, "status", "--porcelain", "--ignored=no").count("tools/codex/runs") == 0


def test_oneshot_dry_run_pass_in_fresh_repo_all_artifacts_schema_valid(repo: Path) -> None:
    res = run_cli("--repo", str(repo), "oneshot", "--base-ref", "HEAD", "--dry-run", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["status"] == "PASS"
    assert [s["stage"] for s in summary["stages"]] == [
        "preflight",
        "launch",
        "bundle-validate",
        "integrate",
    ]
    run = repo / "tools/codex/runs" / summary["run_id"]
    assert (repo / summary["report"]).is_file()
    kinds = {
        "STATUS.json": "worker_status",
        "FILES_CHANGED.json": "files_changed",
        "SCOPE_LOCK.json": "scope_lock",
        "HANDOFF_NOTE.json": "handoff_note",
        "LOGS/INDEX.json": "logs_index",
    }
    for w in "ABCD":
        for name in (
            "STATUS.json",
            "SUMMARY.md",
            "FILES_CHANGED.json",
            "DIFF.patch",
            "SUGGESTIONS.md",
            "SCOPE_LOCK.json",
            "HANDOFF_NOTE.json",
            "LOGS/INDEX.json",
        ):
            path = run / f"{w}_worker" / name
            assert path.is_file(), path
            if name in kinds:
                assert schemas.errors(kinds[name], read_json(path)) == [], path
        assert read_json(run / f"{w}_worker" / "STATUS.json")["dry_run"] is True
    for name in (
        "STATUS.json",
        "FINAL_REPORT.txt",
        "FILES_CHANGED.json",
        "DIFF.patch",
        "MERGE_PLAN.md",
        "LOGS/INDEX.json",
    ):
        assert (run / "Z_integrator" / name).is_file(), name
    assert schemas.errors("run_manifest", read_json(run / "RUN_MANIFEST.json")) == []
    assert schemas.errors("validation", read_json(run / "VALIDATION.json")) == []
    assert git(repo, "status", "--porcelain") == ""


def test_oneshot_in_this_repository(tmp_path: Path) -> None:
    clone = tmp_path / "self"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    res = run_cli("--repo", str(clone), "oneshot", "--base-ref", "HEAD", "--dry-run")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PASS" in res.stdout.splitlines()[0]
    assert git(clone, "status", "--porcelain") == ""


def test_oneshot_blocked_at_validation_skips_integrate_and_reports(repo: Path) -> None:
    # A headless agent that edits outside its scope: validation blocks, integrate is SKIPPED,
    # and Z's report and STATUS.json still say BLOCKED, as does the exit code.
    agent = "import pathlib; pathlib.Path('README.md').write_text('out of scope\\n')"
    write_config(
        repo,
        {
            "workers": {
                "agent": {"preset": "script", "argv": ["{python}", "-c", agent], "timeout_s": 60}
            }
        },
    )
    res = run_cli("--repo", str(repo), "--now", PINNED, "oneshot", "--workers", "A", "--json")
    summary = json.loads(res.stdout)
    assert res.returncode == 3, res.stderr
    assert summary["status"] == "BLOCKED"
    stages = {s["stage"]: s["status"] for s in summary["stages"]}
    assert stages["bundle-validate"] == "BLOCKED" and stages["integrate"] == "SKIPPED"
    z = run_dir(repo, summary["run_id"]) / "Z_integrator"
    status = read_json(z / "STATUS.json")
    assert status["status"] == "BLOCKED" and status["applied"] == []
    report = (z / "FINAL_REPORT.txt").read_text()
    assert "STATUS:      BLOCKED" in report and "[scope-not-allowed] A README.md" in report
    assert (z / "DIFF.patch").read_bytes() == b""
    untracked = git(repo, "status", "--porcelain", "--untracked-files=all")
    assert (
        untracked == "?? tools/codex/factory/factory.config.json\n"
    )  # the test's own config, nothing else


def test_preflight_blocks_on_bad_base_ref(repo: Path) -> None:
    res = run_cli("--repo", str(repo), "preflight", "--base-ref", "no-such-branch")
    assert res.returncode == 3
    assert "FAIL base-ref" in res.stdout and "fix:" in res.stdout
    res = run_cli(
        "--repo", str(repo), "oneshot", "--dry-run", "--base-ref", "no-such-branch", "--json"
    )
    assert res.returncode == 3
    summary = json.loads(res.stdout)
    assert summary["status"] == "BLOCKED"
    assert [s["status"] for s in summary["stages"]] == [
        "BLOCKED",
        "SKIPPED",
        "SKIPPED",
        "SKIPPED",
        "SKIPPED",
    ]
    assert not [p for p in (repo / "tools/codex/runs").glob("factory_*") if p.is_dir()]


def test_oneshot_blocked_run_writes_report_and_skips(repo: Path, tmp_path: Path) -> None:
    write_config(
        repo,
        {
            "checks": {
                "required": [{"name": "red", "argv": ["{python}", "-c", "raise SystemExit(1)"]}]
            }
        },
    )
    res = run_cli("--repo", str(repo), "--now", PINNED, "oneshot", "--dry-run", "--json")
    summary = json.loads(res.stdout)
    assert res.returncode == 3 and summary["status"] == "BLOCKED"
    run_id = summary["run_id"]
    z = run_dir(repo, run_id) / "Z_integrator"
    assert read_json(z / "STATUS.json")["status"] == "BLOCKED"
    assert "STATUS:      BLOCKED" in (z / "FINAL_REPORT.txt").read_text()


def test_hostile_run_ids_are_usage_errors_and_create_nothing(repo: Path) -> None:
    for bad in ["../x", "a/b", "C:\\x", "", "x" * 200, "a\x00b", ".", ".."]:
        if "\x00" in bad:
            continue  # argv cannot carry NUL; ids.validate_run_id is tested directly
        res = run_cli("--repo", str(repo), "launch", "--dry-run", "--run-id", bad)
        assert res.returncode == 2, (bad, res.stderr)
        assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1
    assert not (repo / "tools/codex/runs").exists() or not [
        p for p in (repo / "tools/codex/runs").iterdir() if p.is_dir()
    ]
    assert not (repo.parent / "x").exists()


def test_print_and_open_report_headless(repo: Path) -> None:
    res = run_cli("--repo", str(repo), "oneshot", "--dry-run", "--run-id", "r1")
    assert res.returncode == 0
    printed = run_cli("--repo", str(repo), "print-report", "--run-id", "r1")
    assert printed.returncode == 0 and "STATUS:      PASS" in printed.stdout
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    opened = run_cli("--repo", str(repo), "open-report", "--run-id", "r1", env=env, timeout=20)
    assert opened.returncode == 0
    assert opened.stdout.strip().endswith("FINAL_REPORT.txt")
    run = run_cli("--repo", str(repo), "open-run", "--run-id", "r1", env=env, timeout=20)
    assert run.returncode == 0 and run.stdout.strip().endswith("r1")
    missing = run_cli("--repo", str(repo), "print-report", "--run-id", "nope")
    assert missing.returncode == 2 and "no run folder" in missing.stderr


def test_launch_twice_with_same_id_is_blocked(repo: Path) -> None:
    assert run_cli("--repo", str(repo), "launch", "--dry-run", "--run-id", "same").returncode == 0
    res = run_cli("--repo", str(repo), "launch", "--dry-run", "--run-id", "same")
    assert res.returncode == 3 and "taken" in res.stderr


def test_determinism_two_clones_byte_identical(tmp_path: Path) -> None:
    origin = make_repo(tmp_path / "origin", FILES)
    outputs = []
    for name in ("first/clone", "second/deeper/clone"):
        clone = tmp_path / name
        clone.parent.mkdir(parents=True)
        subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
        run_id = launch_dry(clone)
        set_bundle(clone, run_id, "A", make_patch(clone, {"src/app.py": "print('v2')\n"}))
        res = run_cli("--repo", str(clone), "--now", PINNED, "bundle-validate", "--run-id", run_id)
        assert res.returncode == 0
        res = run_cli("--repo", str(clone), "--now", PINNED, "integrate", "--run-id", run_id)
        assert res.returncode == 0, res.stderr
        run = run_dir(clone, run_id)
        files = {
            p.relative_to(run).as_posix(): p.read_bytes()
            for p in sorted(run.rglob("*"))
            if p.is_file()
        }
        ledger = (clone / "tools/codex/runs/factory_ledger.jsonl").read_bytes()
        outputs.append((run_id, files, ledger))
    assert outputs[0][0] == outputs[1][0]
    assert outputs[0][1].keys() == outputs[1][1].keys()
    for key in outputs[0][1]:
        assert outputs[0][1][key] == outputs[1][1][key], key
    assert outputs[0][2] == outputs[1][2]
    assert str(tmp_path).encode() not in outputs[0][2]


def test_python_check_placeholder_uses_this_interpreter(repo: Path) -> None:
    probe = f"import sys; sys.exit(0 if sys.executable == {sys.executable!r} else 5)"
    write_config(
        repo, {"checks": {"required": [{"name": "py", "argv": ["{python}", "-c", probe]}]}}
    )
    run_id = validated_run(repo, {})
    assert_agree(repo, run_id, integrate(repo, run_id), "PASS", 0)


def test_keep_sandbox_flag_keeps_it(repo: Path) -> None:
    write_config(repo, {"run": {"keep_sandbox": True}})
    run_id = validated_run(repo, {"A": make_patch(repo, {"src/app.py": "x\n"})})
    assert integrate(repo, run_id).returncode == 0
    sandbox = run_dir(repo, run_id) / "sandbox"
    assert (sandbox / "src/app.py").read_text() == "x\n"
    shutil.rmtree(sandbox)


def test_flag_record_check_output_in_ledger(repo: Path) -> None:
    write_config(
        repo,
        {
            "checks": {
                "required": [{"name": "talk", "argv": ["{python}", "-c", "print('said-this')"]}]
            }
        },
    )
    run_id = validated_run(repo, {})
    assert integrate(repo, run_id).returncode == 0
    events = [
        json.loads(x)
        for x in (repo / "tools/codex/runs/factory_ledger.jsonl").read_text().splitlines()
    ]
    finished = [e for e in events if e["event_type"] == "check.finished" and e["run_id"] == run_id]
    assert "output_tail" not in finished[0]["payload"]  # off by default
    write_config(
        repo,
        {
            "checks": {
                "required": [{"name": "talk", "argv": ["{python}", "-c", "print('said-this')"]}]
            },
            "feature_flags": {"record_check_output_in_ledger": True},
        },
    )
    run2 = validated_run(repo, {})
    assert integrate(repo, run2).returncode == 0
    events = [
        json.loads(x)
        for x in (repo / "tools/codex/runs/factory_ledger.jsonl").read_text().splitlines()
    ]
    finished = [e for e in events if e["event_type"] == "check.finished" and e["run_id"] == run2]
    assert finished[0]["payload"]["output_tail"] == {"stdout": ["said-this"], "stderr": []}
    assert "failing_tests" not in finished[0]["payload"]  # it passed


def test_flag_strict_handoff_dependencies(repo: Path) -> None:
    def run_with_dependency(now: str) -> str:
        run_id = launch_dry(repo, now=now)
        note = run_dir(repo, run_id) / "A_worker" / "HANDOFF_NOTE.json"
        doc = read_json(note)
        doc["depends_on"] = ["B"]
        note.write_text(json.dumps(doc))
        assert (
            run_cli(
                "--repo", str(repo), "bundle-validate", "--run-id", run_id, "--workers", "A,C"
            ).returncode
            == 0
        )
        return run_id

    # Off (default): a dependency on a worker outside this integration is ignored (the run is
    # still BLOCKED, as any subset integration: B and D are left out).
    first = run_with_dependency(PINNED)
    assert_agree(repo, first, integrate(repo, first, "--workers", "A,C"), "BLOCKED", 3)
    assert read_json(run_dir(repo, first) / "Z_integrator" / "STATUS.json")["reasons"] == [
        "integrate: partial integration: left out B, D"
    ]
    write_config(repo, {"feature_flags": {"strict_handoff_dependencies": True}})
    run_id = run_with_dependency("2026-11-21T20:16:00Z")
    res = integrate(repo, run_id, "--workers", "A,C")
    assert_agree(repo, run_id, res, "BLOCKED", 3)
    assert "A->B" in " ".join(
        read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")["reasons"]
    )


def test_dependencies_change_merge_order(repo: Path) -> None:
    run_id = launch_dry(repo)
    note = run_dir(repo, run_id) / "A_worker" / "HANDOFF_NOTE.json"
    doc = read_json(note)
    doc["depends_on"] = ["C"]
    note.write_text(json.dumps(doc))
    assert run_cli("--repo", str(repo), "bundle-validate", "--run-id", run_id).returncode == 0
    assert integrate(repo, run_id).returncode == 0
    order = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")["merge_order"]
    assert order == ["B", "C", "A", "D"]


def test_hand_edited_validation_is_refused(repo: Path) -> None:
    run_id = launch_dry(repo)
    set_bundle(repo, run_id, "A", make_patch(repo, {"README.md": "evil\n"}))
    assert run_cli("--repo", str(repo), "bundle-validate", "--run-id", run_id).returncode == 3
    path = run_dir(repo, run_id) / "VALIDATION.json"
    doc = read_json(path)
    doc.update(status="PASS", findings=[], verdicts={w: "PASS" for w in doc["verdicts"]})
    path.write_text(json.dumps(doc), encoding="utf-8")
    res = integrate(repo, run_id)
    assert_agree(repo, run_id, res, "BLOCKED", 3)
    reasons = " ".join(read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")["reasons"])
    assert "not the file bundle-validate wrote" in reasons
    assert (run_dir(repo, run_id) / "Z_integrator" / "DIFF.patch").read_bytes() == b""


def test_checks_are_the_runs_own_an_env_var_cannot_drop_them(repo: Path) -> None:
    write_config(
        repo,
        {
            "checks": {
                "required": [{"name": "red", "argv": ["{python}", "-c", "raise SystemExit(1)"]}]
            }
        },
    )
    run_id = validated_run(repo, {})
    res = integrate(repo, run_id, env={"FACTORY_CHECKS__REQUIRED": "[]"})
    assert_agree(repo, run_id, res, "BLOCKED", 3)
    assert (
        read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")["checks"][0]["name"]
        == "red"
    )


def test_attestation_failure_makes_everything_say_fail(repo: Path) -> None:
    run_id = validated_run(repo, {})
    (run_dir(repo, run_id) / "attestations" / "bundles.sha256").mkdir()
    res = integrate(repo, run_id)
    assert_agree(repo, run_id, res, "FAIL", 1)
    reasons = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")["reasons"]
    assert any("could not write the report" in r for r in reasons)


def test_symlinked_logs_folder_still_gets_a_report(repo: Path, tmp_path: Path) -> None:
    run_id = validated_run(repo, {})
    outside = tmp_path / "outside-logs"
    outside.mkdir()
    (run_dir(repo, run_id) / "Z_integrator" / "LOGS").symlink_to(outside, target_is_directory=True)
    res = integrate(repo, run_id)
    assert_agree(repo, run_id, res, "BLOCKED", 3)
    assert list(outside.iterdir()) == []
    doc = read_json(run_dir(repo, run_id) / "Z_integrator" / "STATUS.json")
    assert doc["policy_violations"] and all("LOGS" in v["path"] for v in doc["policy_violations"])


def test_a_new_integration_carries_nothing_of_an_earlier_attempt(repo: Path) -> None:
    run_id = validated_run(repo, {})
    stale = run_dir(repo, run_id) / "Z_integrator" / "LOGS" / "check-old.stdout.log"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("from an earlier attempt\n")
    assert_agree(repo, run_id, integrate(repo, run_id), "PASS", 0)
    assert not stale.exists()
    index = read_json(run_dir(repo, run_id) / "Z_integrator" / "LOGS" / "INDEX.json")
    assert "check-old.stdout.log" not in [e["path"] for e in index["logs"]]


def test_checks_cannot_walk_up_to_the_user_repo(repo: Path) -> None:
    probe = (
        "import subprocess, sys; "
        "bad = [d for d in ('..', '../..', '../../..', '../../../..') "
        "if subprocess.run(['git', '-C', d, 'rev-parse', '--git-dir'], capture_output=True).returncode == 0]; "
        "r = subprocess.run(['git', '-C', '../..', 'branch', 'pwned-by-check'], capture_output=True); "
        "sys.exit(0 if not bad and r.returncode != 0 else 9)"
    )
    write_config(
        repo, {"checks": {"required": [{"name": "walk-up", "argv": ["{python}", "-c", probe]}]}}
    )
    run_id = validated_run(repo, {})
    before = snapshot(repo)
    assert_agree(repo, run_id, integrate(repo, run_id), "PASS", 0)
    assert snapshot(repo) == before


def test_merged_diff_ignores_the_users_git_config(
    repo: Path, tmp_path: Path, isolated_env: Path
) -> None:
    lines = "".join(f"line {i}\n" for i in range(40))
    (repo / "src/long.txt").write_text(lines)
    git(repo, "add", "src/long.txt")
    git(repo, "commit", "-q", "-m", "long file")
    changed = lines.replace("line 20\n", "LINE 20\n")
    outputs = []
    patch = make_patch(repo, {"src/long.txt": changed})  # made before the hostile config below
    for context in ("3", "9"):
        (isolated_env / ".gitconfig").write_text(
            f"[diff]\n\tcontext = {context}\n\tnoprefix = true\n"
        )
        run_id = launch_dry(repo, now=f"2026-11-21T20:1{context}:00Z")
        set_bundle(repo, run_id, "A", patch)
        assert run_cli("--repo", str(repo), "bundle-validate", "--run-id", run_id).returncode == 0
        assert integrate(repo, run_id).returncode == 0
        outputs.append((run_dir(repo, run_id) / "Z_integrator" / "DIFF.patch").read_bytes())
    assert outputs[0] == outputs[1]
    assert b"@@ -18,7 +18,7 @@" in outputs[0]


def test_integrator_files_changed_names_every_path_its_diff_touches(
    repo: Path, tmp_path: Path
) -> None:
    """Z's FILES_CHANGED (read from the sandbox index) equals what its DIFF.patch touches: a
    rename's two names, a deletion, a mode change, a binary file, a new file."""
    a = make_patch(
        repo,
        {"src/blob.bin": b"\x00\x01\xff" * 40},
        renames={"src/app.py": "src/main.py"},
    )
    b = make_patch(repo, {"tests/new_test.py": "X = 1\n"}, chmod=["tests/test_app.py"])
    c = make_patch(repo, {"README.md": None, "docs/guide.md": "guide v2\n"})
    run_id = validated_run(repo, {"A": a, "B": b, "C": c})
    res = integrate(repo, run_id)
    assert_agree(repo, run_id, res, "PASS", 0)
    z = run_dir(repo, run_id) / "Z_integrator"
    listed = read_json(z / "FILES_CHANGED.json")["files"]
    assert b"rename from src/app.py" in (z / "DIFF.patch").read_bytes()
    assert listed == touched_by_git((z / "DIFF.patch").read_bytes())
    assert listed == [
        "README.md",
        "docs/guide.md",
        "src/app.py",
        "src/blob.bin",
        "src/main.py",
        "tests/new_test.py",
        "tests/test_app.py",
    ]
