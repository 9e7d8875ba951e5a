"""The Python API: the same operations as the CLI, typed results, typed errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.factory import make_patch
from tests.support.repos import PINNED, make_repo
from tools.codex.factory import Factory
from tools.codex.factory.errors import BlockedError, UsageError
from tools.codex.factory.infra.locks import ProcessLock


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "hi\n", "src/app.py": "print(1)\n"})


def test_launch_import_validate_integrate_replay(repo: Path, tmp_path: Path) -> None:
    patch = tmp_path / "change.patch"
    patch.write_bytes(make_patch(repo, {"src/app.py": "print(2)\n"}))
    with Factory(repo, now=PINNED) as factory:
        run = factory.launch(dry_run=True)
        assert run.workers == ["A", "B", "C", "D"] and run.run_id.startswith("factory_")
        imported = factory.import_patch(run.run_id, "A", patch)
        assert imported.files == ["src/app.py"]
        checked = factory.validate(run.run_id)
        assert checked.status == "PASS" and checked.verdicts["A"] == "PASS"
        result = factory.integrate(run.run_id)
        assert (
            result.status == "PASS" and result.report and result.report.endswith("FINAL_REPORT.txt")
        )
        assert factory.replay(run.run_id).ok
        verified = factory.verify_ledger()
        assert verified.ok and verified.head == result.ledger_head


def test_a_blocked_verdict_is_a_result_not_an_exception(repo: Path, tmp_path: Path) -> None:
    patch = tmp_path / "scope.patch"
    patch.write_bytes(make_patch(repo, {"README.md": "changed\n"}))
    with Factory(repo, now=PINNED) as factory:
        run = factory.launch(dry_run=True)
        factory.import_patch(run.run_id, "A", patch)  # README.md is outside A's scope
        checked = factory.validate(run.run_id)
        assert checked.status == "BLOCKED"
        assert [f["rule"] for f in checked.findings] == ["scope-not-allowed"]
        assert factory.oneshot(dry_run=True, base_ref="HEAD").status == "PASS"


def test_errors_are_typed_and_carry_their_status(repo: Path) -> None:
    with Factory(repo, now=PINNED) as factory:
        with pytest.raises(UsageError) as bad:
            factory.validate("no-such-run")
        assert bad.value.status == "USAGE" and bad.value.exit_code == 2
        assert "--" not in str(bad.value)  # no CLI flag in a library message
        with pytest.raises(UsageError, match="base ref 'nope'"):
            factory.launch(dry_run=True, base_ref="nope")
        run = factory.launch(dry_run=True)
        lock = ProcessLock(repo / "tools/codex/runs" / run.run_id / "locks" / "run.lock", 0, "t")
        with lock, pytest.raises(BlockedError) as held:
            factory.validate(run.run_id)
        lock.close()
        assert held.value.status == "BLOCKED" and held.value.exit_code == 3


def test_the_readme_example_runs(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re

    from tests.support.repos import ROOT

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Python API\n.*?```python\n(.*?)```", text, re.S)
    assert block is not None
    (repo / "change.patch").write_bytes(make_patch(repo, {"src/app.py": "print(3)\n"}))
    monkeypatch.chdir(repo)
    monkeypatch.setenv("FACTORY_NOW", PINNED)
    exec(compile(block.group(1), "README.md", "exec"), {})
    assert (repo / "tools/codex/runs").is_dir()


@pytest.mark.parametrize("key", ["kind", "foo.bar", "run.foo", ""])
def test_a_config_override_that_is_no_key_is_one_usage_error(repo: Path, key: str) -> None:
    with pytest.raises(UsageError, match="not a config key"):
        Factory(repo, config={key: "x"})


def test_an_api_launch_records_its_kind_once(repo: Path) -> None:
    with Factory(repo, now=PINNED) as factory:
        run = factory.launch(dry_run=True, kind="nightly")
    manifest = json.loads((repo / run.run_dir / "RUN_MANIFEST.json").read_text())
    assert manifest["kind"] == manifest["config"]["run"]["kind"] == "nightly"
