"""Size limits on what a worker hands back, through `bundle-validate`: each limit is a finding
(BLOCKED, exit 3) naming the file and the rule, and a huge file is listed by its size, never
read (the validator stays within a memory limit a real child process is given)."""

from __future__ import annotations

import json
import os
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
    validate,
    write_config,
)
from tests.support.repos import PINNED, ROOT, make_repo

FILES = {"README.md": "hello\n", "src/app.py": "print('app')\n"}
GIB = 1024**3


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def limited_run(repo: Path, **limits: int) -> str:
    """A dry run of worker A launched with ``limits`` (recorded in its manifest)."""
    write_config(repo, {"limits": limits})
    run_id = launch_dry(repo, "--workers", "A")
    manifest = read_json(run_dir(repo, run_id) / "RUN_MANIFEST.json")
    for key, value in limits.items():
        assert manifest["config"]["limits"][key] == value
    return run_id


def findings(doc: dict[str, object]) -> set[tuple[str, str]]:
    listed = doc["findings"]
    assert isinstance(listed, list)
    return {(f["path"], f["rule"]) for f in listed if f["worker"] == "A"}


def test_a_bundle_over_its_total_size_is_a_finding(repo: Path) -> None:
    run_id = limited_run(repo, max_bundle_bytes=8192)
    logs = run_dir(repo, run_id) / "A_worker" / "LOGS"
    (logs / "big.log").write_bytes(b"x" * 9000)  # within the file limit, over the bundle's
    code, doc = validate(repo, run_id)
    assert code == 3
    assert ("LOGS/big.log", "bundle-too-large") in findings(doc)


def test_a_bundle_with_too_many_files_is_a_finding(repo: Path) -> None:
    run_id = limited_run(repo, max_bundle_files=16)
    logs = run_dir(repo, run_id) / "A_worker" / "LOGS"
    for i in range(20):
        (logs / f"extra{i:02}.log").write_bytes(b"x\n")
    code, doc = validate(repo, run_id)
    assert code == 3
    assert ("A_worker", "bundle-too-many-files") in findings(doc)


def test_a_path_over_the_path_limit_is_a_finding(repo: Path) -> None:
    run_id = limited_run(repo, max_path_chars=64)
    long = "src/" + "d" * 70 + ".py"
    set_bundle(repo, run_id, "A", make_patch(repo, {long: "X = 1\n"}))
    code, doc = validate(repo, run_id)
    assert code == 3
    rules = {rule for _path, rule in findings(doc)}
    assert "path-too-long" in rules
    shown = next(f for f in doc["findings"] if f["rule"] == "path-too-long")
    assert f"a path of {len(long)} characters (over the limit of 64)" in shown["message"]


def test_a_diff_patch_over_the_file_limit_is_a_finding_not_read(repo: Path) -> None:
    run_id = limited_run(repo, max_file_bytes=4096)
    patch = make_patch(repo, {"src/app.py": "print('v2')\n" + "# pad\n" * 1000})
    assert len(patch) > 4096
    set_bundle(repo, run_id, "A", patch)
    code, doc = validate(repo, run_id)
    assert code == 3
    assert ("DIFF.patch", "bundle-file-too-large") in findings(doc)
    message = next(f["message"] for f in doc["findings"] if f["path"] == "DIFF.patch")
    assert f"{len(patch)} bytes: over the file limit of 4096 bytes; not read" in message


def _cap_memory() -> None:  # pragma: no cover - runs in the child before exec
    import resource

    limit = int(1.5 * GIB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_AS is POSIX")
def test_huge_files_are_listed_by_size_under_a_memory_limit(repo: Path) -> None:
    """A 3 GiB (sparse) log and a DIFF.patch over the file limit, judged by a real process
    that may map at most 1.5 GiB: BLOCKED with a finding for each, never a MemoryError."""
    run_id = launch_dry(repo, "--workers", "A")
    bundle = run_dir(repo, run_id) / "A_worker"
    with open(bundle / "LOGS" / "huge.log", "wb") as fh:
        fh.truncate(3 * GIB)
    with open(bundle / "DIFF.patch", "wb") as fh:
        fh.truncate(65 * 1024 * 1024)  # over the default 64 MiB file limit
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, "-m", "tools.codex.factory", "--repo", str(repo), "--now", PINNED]
    res = subprocess.run(
        [*argv, "bundle-validate", "--run-id", run_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_cap_memory,
        check=False,
    )
    assert res.returncode == 3, res.stdout + res.stderr
    assert "MemoryError" not in res.stderr and "Traceback" not in res.stderr
    doc = json.loads(res.stdout)
    got = findings(doc)
    assert ("LOGS/huge.log", "bundle-file-too-large") in got
    assert ("DIFF.patch", "bundle-file-too-large") in got
    assert read_json(run_dir(repo, run_id) / "VALIDATION.json")["status"] == "BLOCKED"
