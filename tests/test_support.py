"""The test helpers keep their promises: an in-process CLI call that hangs fails its test at its
timeout instead of stalling the test worker."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support.repos import make_repo, run_cli


@pytest.mark.skipif(os.environ.get("FACTORY_TEST_REAL") == "1", reason="in-process runs only")
def test_run_cli_enforces_its_timeout_in_process(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    assert run_cli("--repo", str(repo), "launch", "--dry-run", "--run-id", "r-hang").returncode == 0
    began = time.monotonic()
    # The run never finishes (launch alone): watch follows it for 6s; the test gives it 1s.
    with pytest.raises(AssertionError, match=r"watch --run-id r-hang .* did not finish within 1s"):
        run_cli("--repo", str(repo), "watch", "--run-id", "r-hang", "--timeout", "6", timeout=1)
    assert time.monotonic() - began < 4
    # A call that ends in time gives its exit code and output as before.
    res = run_cli(
        "--repo", str(repo), "watch", "--run-id", "r-hang", "--timeout", "0.5", timeout=30
    )
    assert res.returncode != 0 and "did not finish within 0.5s" in res.stderr
