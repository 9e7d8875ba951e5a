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


def test_facts_recorded_by_the_previous_release_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Facts of version 2 (before base links were recorded) are re-derived and compared on the
    keys version 2 had: their replay is not a divergence."""
    import os

    from tests.support.factory import launch_dry, run_dir, set_bundle
    from tests.support.repos import PINNED, git, make_repo, run_cli
    from tools.codex.factory.run import validate as validate_mod

    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "src/a.py": "a\n"})
    os.symlink("a.py", repo / "src" / "link")
    git(repo, "add", "-A")
    patch = git(repo, "diff", "--cached", "--full-index", "HEAD").encode()
    git(repo, "reset", "-q", "--hard", "HEAD")
    run_id = launch_dry(repo)
    set_bundle(repo, run_id, "A", patch)
    gather = validate_mod.gather_facts

    def previous_release(*args: object, **kwargs: object) -> object:
        facts = gather(*args, **kwargs)  # type: ignore[arg-type]
        facts.pop("base_links", None)
        facts["version"] = 2
        return facts

    monkeypatch.setattr(validate_mod, "gather_facts", previous_release)
    res = run_cli("--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id)
    assert "special-symlink" in res.stdout  # judged, links and all
    monkeypatch.undo()
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id)
    assert replay.returncode == 0 and "REPLAY OK" in replay.stdout, replay.stdout
    assert (run_dir(repo, run_id) / "VALIDATION.json").exists()
