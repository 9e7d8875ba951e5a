"""A ledger and run folders written by an earlier release still verify and replay.

The fixture was made by the factory as released before the trust-boundary and layering work:
three runs (a dry run, a PASS of three imported patches, a BLOCKED overlap) in a small repository.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.support.repos import run_cli

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ledger_v1_runs.tar.gz"
RUNS = ("legacy-dry", "legacy-pass", "legacy-blocked")


@pytest.fixture(scope="module")
def legacy_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("legacy")
    with tarfile.open(FIXTURE) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
            tar.extractall(root, filter="data")
        else:  # pragma: no cover - older patch releases; the fixture is ours
            tar.extractall(root)
    return root / "repo"


def test_legacy_ledger_verifies(legacy_repo: Path) -> None:
    res = run_cli("--repo", str(legacy_repo), "ledger", "verify")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "VERIFY OK" in res.stdout


@pytest.mark.parametrize("run_id", RUNS)
def test_legacy_runs_replay(legacy_repo: Path, run_id: str) -> None:
    res = run_cli("--repo", str(legacy_repo), "ledger-replay", "--run-id", run_id)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert res.stdout.rstrip().endswith("REPLAY OK")
