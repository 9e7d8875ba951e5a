"""A FIFO where the factory expects a file never hangs `bundle-validate` (a real process, with a
timeout): a FIFO in a bundle is a finding naming it, a FIFO at the ledger one line naming it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.factory import launch_dry, run_dir
from tests.support.repos import PINNED, make_repo, run_cli

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")

FILES = {"README.md": "hello\n", "src/app.py": "print('app')\n"}
LEDGER = "tools/codex/runs/factory_ledger.jsonl"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def validate_process(repo: Path, run_id: str) -> tuple[int, str, str]:
    """`bundle-validate` as a real child process: a hang fails the test (TimeoutExpired) and
    leaves no thread behind."""
    res = run_cli(
        "--repo",
        str(repo),
        "--now",
        PINNED,
        "bundle-validate",
        "--run-id",
        run_id,
        "--json",
        real=True,
        timeout=60,
    )
    return res.returncode, res.stdout, res.stderr


@pytest.mark.parametrize("name", ["DIFF.patch", "LOGS/x.log", "STATUS.json"])
def test_a_fifo_in_a_bundle_is_a_finding_not_a_hang(repo: Path, name: str) -> None:
    run_id = launch_dry(repo, "--workers", "A")
    target = run_dir(repo, run_id) / "A_worker" / name
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    code, out, err = validate_process(repo, run_id)
    assert code == 3, out + err
    doc = json.loads(out)
    assert doc["status"] == "BLOCKED"
    named = {f["rule"] for f in doc["findings"] if f["worker"] == "A" and f["path"] == name}
    assert "bundle-file-special" in named, doc["findings"]
    message = next(f["message"] for f in doc["findings"] if f["rule"] == "bundle-file-special")
    assert message == (
        f"worker A: {name}: not a regular file (a FIFO, socket or device): nothing is read "
        "from it; remove it"
    )
    assert "Traceback" not in err


def test_a_fifo_at_the_ledger_is_one_line_not_a_hang(repo: Path) -> None:
    run_id = launch_dry(repo, "--workers", "A")
    ledger = repo / LEDGER
    ledger.unlink()
    os.mkfifo(ledger)
    code, out, err = validate_process(repo, run_id)
    assert code == 3, out + err
    assert err == (
        f"factory: error: ledger: {LEDGER} is a FIFO; the ledger's files must be regular "
        "files: remove it\n"
    )
    assert "Traceback" not in err
    assert not (run_dir(repo, run_id) / "VALIDATION.json").exists()
