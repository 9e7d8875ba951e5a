"""One test per DESIGN §5 rule, each with a hand-made bundle: BLOCKED, exit 3, rule named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.factory import (
    edit_scope,
    launch_dry,
    make_patch,
    read_json,
    rules,
    run_dir,
    set_bundle,
    validate,
    write_json,
    write_plan,
)
from tests.support.repos import make_repo

FILES = {
    "README.md": "hello\n",
    "src/app.py": "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\nf = 6\ng = 7\nh = 8\n",
    "src/util.py": "x = 1\n",
    "docs/guide.md": "guide\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


@pytest.fixture
def run(repo: Path) -> str:
    return launch_dry(repo)


def assert_blocked(
    repo: Path, run_id: str, rule: str, worker: str = "A", path: str | None = None
) -> dict:
    code, doc = validate(repo, run_id)
    assert code == 3, doc
    assert doc["status"] == "BLOCKED"
    hits = [f for f in doc["findings"] if f["rule"] == rule and f["worker"] == worker]
    assert hits, f"no {rule} finding for {worker}: {doc['findings']}"
    if path is not None:
        assert any(f["path"] == path for f in hits), hits
    assert doc["verdicts"][worker] == "BLOCKED"
    on_disk = read_json(run_dir(repo, run_id) / "VALIDATION.json")
    assert on_disk["findings"] == doc["findings"]
    return doc


def test_clean_dry_run_bundles_pass(repo: Path, run: str) -> None:
    code, doc = validate(repo, run)
    assert code == 0 and doc["status"] == "PASS" and doc["findings"] == []
    assert set(doc["verdicts"].values()) == {"PASS"}


def test_missing_file(repo: Path, run: str) -> None:
    (run_dir(repo, run) / "A_worker" / "SUMMARY.md").unlink()
    assert_blocked(repo, run, "bundle-file-missing", path="SUMMARY.md")


def test_bad_json(repo: Path, run: str) -> None:
    (run_dir(repo, run) / "A_worker" / "STATUS.json").write_text("{not json", encoding="utf-8")
    assert_blocked(repo, run, "json-invalid", path="STATUS.json")


def test_schema_violation(repo: Path, run: str) -> None:
    write_json(
        run_dir(repo, run) / "A_worker" / "FILES_CHANGED.json",
        {"schema_version": 1, "files": "src/app.py"},
    )
    doc = assert_blocked(repo, run, "schema-violation", path="FILES_CHANGED.json")
    assert any("files" in f["message"] for f in doc["findings"])


def test_traversal_path(repo: Path, run: str) -> None:
    patch = make_patch(repo, {"src/evil.py": "x\n"}).replace(b"src/evil.py", b"src/../../evil.py")
    set_bundle(repo, run, "A", patch)
    assert_blocked(repo, run, "path-traversal", path="src/../../evil.py")


def test_absolute_path(repo: Path, run: str) -> None:
    set_bundle(repo, run, "A", b"", files=["/etc/passwd"])
    assert_blocked(repo, run, "path-absolute", path="/etc/passwd")


def test_drive_path(repo: Path, run: str) -> None:
    set_bundle(repo, run, "A", b"", files=["C:/Windows/x.dll"])
    assert_blocked(repo, run, "path-drive", path="C:/Windows/x.dll")


def test_git_dir_path(repo: Path, run: str) -> None:
    patch = make_patch(repo, {"src/hook": "x\n"}).replace(b"src/hook", b".git/hooks/pre-commit")
    set_bundle(repo, run, "A", patch)
    assert_blocked(repo, run, "path-git-dir", path=".git/hooks/pre-commit")


def test_files_changed_lists_untouched_file(repo: Path, run: str) -> None:
    patch = make_patch(repo, {"src/app.py": FILES["src/app.py"] + "i = 9\n"})
    set_bundle(repo, run, "A", patch, files=["src/app.py", "src/util.py"])
    assert_blocked(repo, run, "files-changed-not-in-patch", path="src/util.py")


def test_patch_touches_unlisted_file(repo: Path, run: str) -> None:
    patch = make_patch(repo, {"src/app.py": "changed\n", "src/util.py": "y = 2\n"})
    set_bundle(repo, run, "A", patch, files=["src/app.py"])
    assert_blocked(repo, run, "files-changed-incomplete", path="src/util.py")


def test_rename_target_leaves_scope(repo: Path, run: str) -> None:
    patch = make_patch(repo, {}, renames={"src/util.py": "docs/util.py"})
    assert b"rename from src/util.py" in patch
    set_bundle(repo, run, "A", patch)
    code, doc = validate(repo, run)
    assert code == 3
    found = {(f["rule"], f["path"]) for f in doc["findings"]}
    assert ("scope-not-allowed", "docs/util.py") in found
    assert ("scope-not-allowed", "src/util.py") not in found


def launch_one(repo: Path, tmp_path: Path, **scope: list[str]) -> str:
    plan = write_plan(tmp_path / "plan-a.json", [{"id": "A", "task": "a", **scope}])
    return launch_dry(repo, "--plan", str(plan))


def test_deny_match(repo: Path, tmp_path: Path) -> None:
    run = launch_one(repo, tmp_path, allow=["src/**"], deny=["src/util.py"])
    set_bundle(repo, run, "A", make_patch(repo, {"src/util.py": "y = 2\n"}))
    doc = assert_blocked(repo, run, "scope-denied", path="src/util.py")
    assert rules(doc) == {"scope-denied"}


def test_protected_path(repo: Path, tmp_path: Path) -> None:
    run = launch_one(repo, tmp_path, allow=["**"])
    set_bundle(repo, run, "A", make_patch(repo, {"scenarios/holdout.md": "peek\n"}))
    doc = assert_blocked(repo, run, "protected-path", path="scenarios/holdout.md")
    assert rules(doc) == {"protected-path"}


def test_protected_path_is_case_insensitive(repo: Path, tmp_path: Path) -> None:
    run = launch_one(repo, tmp_path, allow=["**"])
    set_bundle(repo, run, "A", make_patch(repo, {"Scenarios/holdout.md": "peek\n"}))
    assert_blocked(repo, run, "protected-path", path="Scenarios/holdout.md")


def test_configured_holdout_paths_are_protected(repo: Path, tmp_path: Path) -> None:
    from tests.support.factory import write_config

    write_config(repo, {"security": {"holdout_paths": ["eval/"]}})
    run = launch_one(repo, tmp_path, allow=["**"])
    set_bundle(repo, run, "A", make_patch(repo, {"eval/new.txt": "answers\n"}))
    doc = assert_blocked(repo, run, "protected-path", path="eval/new.txt")
    assert rules(doc) == {"protected-path"}


def test_scope_lock_edited_after_launch_is_refused(repo: Path, run: str) -> None:
    edit_scope(repo, run, "A", allow=["**"])
    set_bundle(repo, run, "A", make_patch(repo, {"README.md": "widened\n"}))
    doc = assert_blocked(repo, run, "scope-lock-changed", path="SCOPE_LOCK.json")
    assert any("launched with" in f["message"] for f in doc["findings"])


def test_policy_comes_from_the_run_not_from_later_config(repo: Path, tmp_path: Path) -> None:
    from tests.support.factory import write_config

    run = launch_one(repo, tmp_path, allow=["**"])
    set_bundle(repo, run, "A", make_patch(repo, {"scenarios/x.md": "peek\n"}))
    write_config(
        repo, {"security": {"protected_paths": [], "holdout_paths": []}}
    )  # edited after launch
    assert_blocked(repo, run, "protected-path", path="scenarios/x.md")


def test_case_collision_with_base(repo: Path, run: str) -> None:
    set_bundle(repo, run, "A", make_patch(repo, {"src/App.py": "shadow\n"}))
    assert_blocked(repo, run, "case-collision", path="src/App.py")


def test_case_collision_across_workers(repo: Path, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "plan.json",
        [
            {"id": "A", "task": "a", "allow": ["src/**"]},
            {"id": "B", "task": "b", "allow": ["src/**"]},
        ],
    )
    run_id = launch_dry(repo, "--plan", str(plan))
    set_bundle(repo, run_id, "A", make_patch(repo, {"src/new.py": "a\n"}))
    set_bundle(repo, run_id, "B", make_patch(repo, {"src/NEW.py": "b\n"}))
    doc = assert_blocked(repo, run_id, "case-collision", worker="A", path="src/new.py")
    assert any(f["rule"] == "case-collision" and f["worker"] == "B" for f in doc["findings"])


def _two_workers_same_file(repo: Path, tmp_path: Path, shared: bool) -> str:
    extra = {"shared": ["src/app.py"]} if shared else {}
    plan = write_plan(
        tmp_path / "plan.json",
        [
            {"id": "A", "task": "top", "allow": ["src/**"], **extra},
            {"id": "B", "task": "bottom", "allow": ["src/**"], **extra},
        ],
    )
    run_id = launch_dry(repo, "--plan", str(plan))
    lines = FILES["src/app.py"].splitlines(keepends=True)
    top = "".join(["A = 0\n", *lines[1:]])
    bottom = "".join([*lines[:-1], "H = 80\n"])
    set_bundle(repo, run_id, "A", make_patch(repo, {"src/app.py": top}))
    set_bundle(repo, run_id, "B", make_patch(repo, {"src/app.py": bottom}))
    return run_id


def test_overlap_without_shared_blocks(repo: Path, tmp_path: Path) -> None:
    run_id = _two_workers_same_file(repo, tmp_path, shared=False)
    doc = assert_blocked(repo, run_id, "overlap", worker="A", path="src/app.py")
    assert doc["overlaps"] == [
        {"path": "src/app.py", "workers": ["A", "B"], "resolution": "blocked"}
    ]
    assert doc["verdicts"] == {"A": "BLOCKED", "B": "BLOCKED"}


def test_overlap_shared_on_both_sides_passes_and_integrates(repo: Path, tmp_path: Path) -> None:
    from tests.support.repos import PINNED, run_cli

    run_id = _two_workers_same_file(repo, tmp_path, shared=True)
    code, doc = validate(repo, run_id)
    assert code == 0, doc["findings"]
    assert doc["overlaps"] == [
        {"path": "src/app.py", "workers": ["A", "B"], "resolution": "shared"}
    ]
    res = run_cli("--repo", str(repo), "--now", PINNED, "integrate", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr
    merged = (run_dir(repo, run_id) / "Z_integrator" / "DIFF.patch").read_text(encoding="utf-8")
    assert "+A = 0" in merged and "+H = 80" in merged


def test_overlap_shared_on_one_side_only_blocks(repo: Path, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "plan.json",
        [
            {"id": "A", "task": "top", "allow": ["src/**"], "shared": ["src/app.py"]},
            {"id": "B", "task": "bottom", "allow": ["src/**"]},
        ],
    )
    run_id = launch_dry(repo, "--plan", str(plan))
    lines = FILES["src/app.py"].splitlines(keepends=True)
    set_bundle(
        repo, run_id, "A", make_patch(repo, {"src/app.py": "".join(["A = 0\n", *lines[1:]])})
    )
    set_bundle(
        repo, run_id, "B", make_patch(repo, {"src/app.py": "".join([*lines[:-1], "H = 80\n"])})
    )
    doc = assert_blocked(repo, run_id, "overlap", worker="B", path="src/app.py")
    assert rules(doc) == {"overlap"}


def test_identical_overlap_needs_the_flag(repo: Path, tmp_path: Path) -> None:
    from tests.support.factory import write_config
    from tests.support.repos import PINNED, run_cli

    plan = write_plan(
        tmp_path / "plan.json",
        [
            {"id": "A", "task": "a", "allow": ["src/**"]},
            {"id": "B", "task": "b", "allow": ["src/**"]},
        ],
    )
    run_id = launch_dry(repo, "--plan", str(plan))
    same = make_patch(repo, {"src/util.py": "x = 2\n"})
    set_bundle(repo, run_id, "A", same)
    set_bundle(repo, run_id, "B", same)
    assert_blocked(repo, run_id, "overlap", worker="A", path="src/util.py")
    # The flag is part of the run's config: it applies to runs launched after it is set.
    write_config(repo, {"run": {"allow_identical_patch_overlap": True}})
    code, doc = validate(repo, run_id)
    assert code == 3
    run_id = launch_dry(repo, "--plan", str(plan), now="2026-11-21T20:16:00Z")
    set_bundle(repo, run_id, "A", same)
    set_bundle(repo, run_id, "B", same)
    code, doc = validate(repo, run_id)
    assert code == 0, doc["findings"]
    assert doc["overlaps"][0]["resolution"] == "identical"
    res = run_cli("--repo", str(repo), "--now", PINNED, "integrate", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr


def test_log_hash_mismatch(repo: Path, run: str) -> None:
    (run_dir(repo, run) / "A_worker" / "LOGS" / "launch.log").write_text(
        "edited\n", encoding="utf-8"
    )
    assert_blocked(repo, run, "log-hash-mismatch", path="LOGS/launch.log")


def test_worker_not_done(repo: Path, run: str) -> None:
    path = run_dir(repo, run) / "A_worker" / "STATUS.json"
    doc = read_json(path)
    doc.update(status="TIMEOUT", reason="agent timed out after 1800s")
    write_json(path, doc)
    found = assert_blocked(repo, run, "worker-not-done", path="STATUS.json")
    assert any("timed out" in f["message"] for f in found["findings"])


def test_unreadable_bundle_folder_is_blocked_not_fail(repo: Path, run: str) -> None:
    import shutil

    shutil.rmtree(run_dir(repo, run) / "B_worker")
    doc = assert_blocked(repo, run, "bundle-file-missing", worker="B")
    assert doc["verdicts"]["A"] == "PASS"


def test_unparseable_patch(repo: Path, run: str) -> None:
    set_bundle(repo, run, "A", b"diff --git a/x b/x\n@@ this is not a hunk\n", files=[])
    assert_blocked(repo, run, "patch-unparseable", path="DIFF.patch")


def test_findings_are_sorted_and_stable(repo: Path, run: str) -> None:
    set_bundle(repo, run, "A", make_patch(repo, {"docs/guide.md": "x\n", "README.md": "y\n"}))
    set_bundle(repo, run, "B", make_patch(repo, {"src/util.py": "z\n"}))
    _, first = validate(repo, run)
    _, second = validate(repo, run)
    keys = [(f["worker"], f["path"], f["rule"], f["message"]) for f in first["findings"]]
    assert keys == sorted(keys) and len(keys) >= 3
    assert first["findings"] == second["findings"]


def test_workers_subset(repo: Path, run: str) -> None:
    set_bundle(repo, run, "B", make_patch(repo, {"src/util.py": "z\n"}))
    code, doc = validate(repo, run, "--workers", "A,C")
    assert code == 0 and doc["workers"] == ["A", "C"]
    code, doc = validate(repo, run, "--workers", "B")
    assert code == 3 and rules(doc) == {"scope-not-allowed"}


def test_symlinked_bundle_folder_is_refused(repo: Path, run: str, tmp_path: Path) -> None:
    import shutil

    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(run_dir(repo, run) / "A_worker"), elsewhere)
    (run_dir(repo, run) / "A_worker").symlink_to(elsewhere, target_is_directory=True)
    assert_blocked(repo, run, "bundle-file-symlink", path="A_worker")


def test_symlinked_logs_folder_is_refused(repo: Path, run: str, tmp_path: Path) -> None:
    import shutil

    logs = run_dir(repo, run) / "A_worker" / "LOGS"
    shutil.move(str(logs), tmp_path / "logs")
    logs.symlink_to(tmp_path / "logs", target_is_directory=True)
    assert_blocked(repo, run, "bundle-file-symlink", path="LOGS")


def test_unlisted_symlink_to_a_device_is_never_read(repo: Path, run: str) -> None:
    (run_dir(repo, run) / "A_worker" / "LOGS" / "extra.log").symlink_to("/proc/self/mem")
    code, doc = validate(repo, run)  # would hang or fail with EIO if the hash followed it
    assert code == 0 and doc["status"] == "PASS"


@pytest.mark.parametrize(
    "path", ["src/.git/config", "src/.GIT/hooks/pre-commit", "src/.git./x", "src/GIT~1/x"]
)
def test_nested_git_dirs_are_refused(repo: Path, run: str, path: str) -> None:
    patch = make_patch(repo, {"src/placeholder.py": "x\n"}).replace(
        b"src/placeholder.py", path.encode()
    )
    set_bundle(repo, run, "A", patch)
    assert_blocked(repo, run, "path-git-dir", path=path)


def test_bundle_from_another_run_is_refused(repo: Path, run: str) -> None:
    path = run_dir(repo, run) / "A_worker" / "STATUS.json"
    doc = read_json(path)
    doc["run_id"] = "some_other_run_001"
    write_json(path, doc)
    assert_blocked(repo, run, "run-id-mismatch", path="STATUS.json")


def test_utf8_bom_in_bundle_json_is_accepted(repo: Path, run: str) -> None:
    path = run_dir(repo, run) / "A_worker" / "FILES_CHANGED.json"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    code, doc = validate(repo, run)
    assert code == 0, doc["findings"]
