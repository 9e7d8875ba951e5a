"""The run's manifest is pinned by launch's one ``manifest.written``: an edited manifest
with a second ``manifest.written`` appended to match it is refused by every stage and by
ledger-replay, and ``artifacts.written`` must agree with the pin."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.support.factory import launch_dry, make_patch, read_json, run_dir, set_bundle, write_json
from tests.support.repos import PINNED, make_repo, run_cli
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.ledger.store import Filter, Ledger

FILES = {
    "README.md": "hello\n",
    "src/app.py": "print('app')\n",
    "tools/__init__.py": "",
    "tools/codex/__init__.py": "",
}
EVERYTHING = {"schema_version": 1, "workers": [{"id": "A", "task": "all", "allow": ["**"]}]}
LEDGER = "tools/codex/runs/factory_ledger.jsonl"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", FILES)


def cli(repo: Path, *args: str) -> tuple[int, str, str]:
    res = run_cli("--repo", str(repo), "--now", PINNED, *args)
    return res.returncode, res.stdout, res.stderr


def launch(repo: Path, tmp_path: Path) -> str:
    plan = tmp_path / "plan.json"
    write_json(plan, EVERYTHING)
    return launch_dry(repo, "--plan", str(plan))


def unprotect(repo: Path, run_id: str) -> str:
    """The attack: no protected paths in RUN_MANIFEST.json, and a second manifest.written
    (a copy of launch's, with the new hash) appended through the ledger's own API."""
    path = run_dir(repo, run_id) / "RUN_MANIFEST.json"
    manifest = read_json(path)
    manifest["config"]["security"]["protected_paths"] = []
    write_json(path, manifest)
    sha = sha256(path)
    with Ledger(repo / LEDGER, Clock()) as ledger:
        first = ledger.select(Filter(run_id=run_id, event_type="manifest.written"))[0]
        ledger.append("manifest.written", run_id, first.stage, {**first.payload, "sha256": sha})
    return sha


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_seqs(repo: Path, run_id: str) -> list[int]:
    with Ledger(repo / LEDGER, Clock()) as ledger:
        return [e.seq for e in ledger.select(Filter(run_id=run_id, event_type="manifest.written"))]


@pytest.mark.parametrize("stage", ["bundle-validate", "integrate", "bundle-collect"])
def test_a_second_manifest_written_is_refused_by_every_stage(
    repo: Path, tmp_path: Path, stage: str
) -> None:
    """Without the pin, validate and integrate PASS a bundle adding factory code."""
    run_id = launch(repo, tmp_path)
    unprotect(repo, run_id)
    set_bundle(repo, run_id, "A", make_patch(repo, {"tools/codex/factory/evil.py": "import os\n"}))
    seqs = manifest_seqs(repo, run_id)
    code, out, err = cli(repo, stage, "--run-id", run_id)
    assert code == 3, out + err
    lines = [line for line in err.splitlines() if "[manifest-rewritten]" in line]
    assert len(lines) == 1 and "RUN_MANIFEST.json" in lines[0]
    assert f"seqs {seqs[0]}, {seqs[1]}" in lines[0]
    assert "Traceback" not in err
    assert not (run_dir(repo, run_id) / "Z_integrator" / "DIFF.patch").exists()


def test_integrate_after_a_clean_validation_is_refused_too(repo: Path, tmp_path: Path) -> None:
    """The manifest is rewritten between validation (PASS) and integration."""
    run_id = launch(repo, tmp_path)
    set_bundle(repo, run_id, "A", make_patch(repo, {"src/app.py": "print('v2')\n"}))
    assert cli(repo, "bundle-validate", "--run-id", run_id)[0] == 0
    unprotect(repo, run_id)
    code, out, err = cli(repo, "integrate", "--run-id", run_id)
    assert code == 3 and "[manifest-rewritten]" in err, out + err


def test_replay_reports_a_second_manifest_written(repo: Path, tmp_path: Path) -> None:
    """The manifest on disk matches the appended pin, so only the pin rule catches it."""
    run_id = launch(repo, tmp_path)
    assert cli(repo, "ledger-replay", "--run-id", run_id)[0] == 0
    unprotect(repo, run_id)
    code, out, err = cli(repo, "ledger", "verify")
    assert code == 0, out + err  # the chain itself is sound: the event was appended
    first, second = manifest_seqs(repo, run_id)
    code, out, err = cli(repo, "ledger-replay", "--run-id", run_id)
    assert code == 3, out + err
    div = [line for line in out.splitlines() if line.startswith("DIVERGENCE")]
    assert any(f"seq={second} manifest.written" in line for line in div), out
    assert any(f"seq {first}" in line for line in div), out


def test_a_manifest_written_disagreeing_with_artifacts_written_is_refused(
    repo: Path, tmp_path: Path
) -> None:
    """A run that (as earlier releases made them) pinned its manifest only in
    artifacts.written: a manifest.written appended later is the only one, but disagrees."""
    run_id = launch(repo, tmp_path)
    lines = (repo / LEDGER).read_bytes().splitlines(keepends=True)
    # Rebuild the ledger without launch's manifest.written, as an earlier release wrote it.
    (repo / LEDGER).unlink()
    (repo / "tools/codex/runs/factory_ledger.sha256").unlink()
    with Ledger(repo / LEDGER, Clock()) as ledger:
        for line in lines:
            ev = json.loads(line)
            if ev["event_type"] != "manifest.written":
                ledger.append(ev["event_type"], ev["run_id"], ev["stage"], ev["payload"])
    assert cli(repo, "bundle-validate", "--run-id", run_id)[0] == 0  # legacy: still trusted
    path = run_dir(repo, run_id) / "RUN_MANIFEST.json"
    manifest = read_json(path)
    manifest["config"]["security"]["protected_paths"] = []
    write_json(path, manifest)
    payload = {"actor": "Z_integrator", "kind": "factory", "sha256": sha256(path)}
    with Ledger(repo / LEDGER, Clock()) as ledger:
        ledger.append("manifest.written", run_id, "launch", payload)
    code, out, err = cli(repo, "bundle-validate", "--run-id", run_id)
    assert code == 3 and "[manifest-rewritten]" in err and "artifacts.written" in err, out + err
    code, out, _err = cli(repo, "ledger-replay", "--run-id", run_id)
    assert code == 3 and "manifest.written" in out


def test_a_refused_integration_ends_the_run_on_record(repo: Path, tmp_path: Path) -> None:
    """A manifest edited after launch: integrate is refused at the door, and the ledger says so
    (integrate.refused, the integrate stage BLOCKED, run.finished BLOCKED with the rule), so
    watch ends with the run's status and replay sees why there is no report."""
    run_id = launch(repo, tmp_path)
    set_bundle(repo, run_id, "A", make_patch(repo, {"src/app.py": "print('v2')\n"}))
    assert cli(repo, "bundle-validate", "--run-id", run_id)[0] == 0
    path = run_dir(repo, run_id) / "RUN_MANIFEST.json"
    manifest = read_json(path)
    manifest["config"]["security"]["protected_paths"] = []
    write_json(path, manifest)
    code, out, err = cli(repo, "integrate", "--run-id", run_id)
    assert code == 3 and "[manifest-changed]" in err, out + err
    with Ledger(repo / LEDGER, Clock()) as ledger:
        evs = sorted(ledger.select(Filter(run_id=run_id)), key=lambda e: e.seq)
    tail = [e for e in evs if e.stage == "integrate" or e.event_type == "run.finished"]
    assert [e.event_type for e in tail] == ["integrate.refused", "stage.finished", "run.finished"]
    refused, stage, finished = (e.payload for e in tail)
    assert "[manifest-changed]" in refused["reason"]
    assert (stage["status"], stage["reason"]) == ("BLOCKED", refused["reason"])
    assert finished["status"] == "BLOCKED"
    assert finished["reasons"] == [f"integrate: {refused['reason']}"]
    res = run_cli("--repo", str(repo), "watch", "--run-id", run_id, "--timeout", "30")
    assert res.returncode == 3, res.stdout + res.stderr
    code, out, _err = cli(repo, "ledger-replay", "--run-id", run_id, "--json")
    found = [d["what"] for d in json.loads(out)["divergences"]]
    assert found and all("RUN_MANIFEST.json" in what for what in found), found


def test_a_refused_validation_ends_the_run_on_record_too(repo: Path, tmp_path: Path) -> None:
    """bundle-validate refused for an edited manifest: the run can never be integrated, and the
    ledger ends it as integrate's refusal does (watch ends, replay sees why)."""
    run_id = launch(repo, tmp_path)
    path = run_dir(repo, run_id) / "RUN_MANIFEST.json"
    manifest = read_json(path)
    manifest["config"]["security"]["protected_paths"] = []
    write_json(path, manifest)
    code, out, err = cli(repo, "bundle-validate", "--run-id", run_id)
    assert code == 3 and "[manifest-changed]" in err, out + err
    with Ledger(repo / LEDGER, Clock()) as ledger:
        evs = sorted(ledger.select(Filter(run_id=run_id)), key=lambda e: e.seq)
    assert [e.event_type for e in evs[-3:]] == [
        "integrate.refused",
        "stage.finished",
        "run.finished",
    ]
    assert evs[-1].payload["status"] == "BLOCKED"
    res = run_cli("--repo", str(repo), "watch", "--run-id", run_id, "--timeout", "30")
    assert res.returncode == 3, res.stdout + res.stderr


def test_a_refusal_is_recorded_with_the_run_s_own_kind(repo: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    write_json(plan, EVERYTHING)
    run_id = launch_dry(repo, "--plan", str(plan), "--kind", "nightly")
    path = run_dir(repo, run_id) / "RUN_MANIFEST.json"
    manifest = read_json(path)
    manifest["config"]["security"]["protected_paths"] = []
    write_json(path, manifest)
    code, out, err = cli(repo, "integrate", "--run-id", run_id)  # today's kind: the default
    assert code == 3, out + err
    with Ledger(repo / LEDGER, Clock()) as ledger:
        refused = ledger.select(Filter(run_id=run_id, event_type="integrate.refused"))
    assert [e.payload["kind"] for e in refused] == ["nightly"]
