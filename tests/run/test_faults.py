"""Faults end cleanly and say so: a full disk or a read-only folder while integrating gives one
line naming the run-relative path, leaves no temporary file, and the run still records its end.

The faults are real: the integrator's folder is a tiny (or read-only) tmpfs mounted in a user
and mount namespace of the child process (``unshare``); skipped where namespaces are not allowed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.factory import launch_dry, make_patch, run_dir, set_bundle
from tests.support.repos import PINNED, ROOT, make_repo, run_cli


def _namespaces() -> bool:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return False
    res = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    return res.returncode == 0


pytestmark = pytest.mark.skipif(not _namespaces(), reason="needs user and mount namespaces")


def integrate_on(repo: Path, run_id: str, mount: str) -> subprocess.CompletedProcess[str]:
    """`integrate` with Z_integrator/ on a tmpfs mounted with ``mount`` options."""
    z = run_dir(repo, run_id) / "Z_integrator"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    script = (
        f"mount -t tmpfs -o {mount} tmpfs {z} && exec {sys.executable} -m tools.codex.factory "
        f"--repo {repo} --now {PINNED} integrate --run-id {run_id}"
    )
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ledger_events(repo: Path, run_id: str) -> list[dict[str, object]]:
    lines = (repo / "tools/codex/runs/factory_ledger.jsonl").read_bytes().splitlines()
    return [e for e in map(json.loads, lines) if e["run_id"] == run_id]


@pytest.fixture
def validated(tmp_path: Path) -> tuple[Path, str]:
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "src/app.py": "x = 1\n"})
    run_id = launch_dry(repo)
    big = "".join(f"line {i} of a long change\n" for i in range(12000))  # ~300 KB
    set_bundle(repo, run_id, "A", make_patch(repo, {"src/app.py": big}))
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert res.returncode == 0, res.stdout + res.stderr
    return repo, run_id


def test_a_full_disk_while_integrating_fails_cleanly_and_the_run_ends(
    validated: tuple[Path, str],
) -> None:
    repo, run_id = validated
    res = integrate_on(repo, run_id, "size=64k")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    text = res.stdout + res.stderr
    assert "Z_integrator/DIFF.patch" in text and str(repo) not in text
    events = ledger_events(repo, run_id)
    finished = [e for e in events if e["event_type"] == "run.finished"]
    assert finished and finished[-1]["payload"]["status"] == "FAIL"  # type: ignore[index]
    assert str(repo) not in json.dumps(events)  # no absolute path in the audit trail
    verify = run_cli("--repo", str(repo), "ledger", "verify")
    assert verify.returncode == 0, verify.stdout


def test_a_report_that_cannot_be_written_is_a_recorded_failure(
    validated: tuple[Path, str],
) -> None:
    repo, run_id = validated
    res = integrate_on(repo, run_id, "size=4k,nr_inodes=3")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    events = ledger_events(repo, run_id)
    finished = [e for e in events if e["event_type"] == "run.finished"]
    assert finished, "the run must record its end"
    payload = finished[-1]["payload"]
    assert payload["status"] == "FAIL"  # type: ignore[index]
    rows = {r["stage"]: r for r in payload["stages"]}  # type: ignore[index]
    assert "summary" in rows and rows["summary"]["status"] == "FAIL"
    assert "could not write the report" in rows["summary"]["reason"]
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id, "--json")
    found = json.loads(replay.stdout)
    assert not [d for d in found["divergences"] if "run.finished" in d["what"]]


def test_a_read_only_run_folder_fails_with_one_line_and_no_absolute_path(
    validated: tuple[Path, str],
) -> None:
    repo, run_id = validated
    res = integrate_on(repo, run_id, "ro")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert "Z_integrator/" in res.stdout + res.stderr
    assert str(repo) not in json.dumps(ledger_events(repo, run_id))
    assert any(e["event_type"] == "run.finished" for e in ledger_events(repo, run_id))
