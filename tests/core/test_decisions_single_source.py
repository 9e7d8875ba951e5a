"""Decisions from one source: for real runs ending in every status (PASS, BLOCKED, FAIL), the
recorded stage and run verdicts are exactly what the core decision functions give for the
recorded inputs, and the replay fold, fed the same recorded events, recomputes the same verdicts
with those same functions (and ledger-replay agrees)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.factory import launch_dry, make_patch, run_dir, set_bundle, write_config
from tests.support.repos import PINNED, make_repo, run_cli
from tools.codex.factory.audit import diskcheck
from tools.codex.factory.audit.fold import fold
from tools.codex.factory.core import decisions, isolation
from tools.codex.factory.infra import jsonio
from tools.codex.factory.ledger.store import Event

FILES = {"README.md": "hi\n", "src/app.py": "x = 1\n", "docs/guide.md": "g\n"}


def events(repo: Path, run_id: str) -> list[dict[str, Any]]:
    lines = (repo / "tools/codex/runs/factory_ledger.jsonl").read_bytes().splitlines()
    return [e for e in map(json.loads, lines) if e["run_id"] == run_id]


def recompute(evs: list[dict[str, Any]]) -> tuple[tuple[str, str], tuple[str, list[str]]]:
    """The integrate stage and the final verdict, from the recorded inputs alone (a stage that
    stopped before planning a merge, e.g. on a refused write, is BLOCKED with its error)."""
    end = next(e for e in evs if e["event_type"] == "stage.finished" and e["stage"] == "integrate")
    finished = next(e for e in evs if e["event_type"] == "run.finished")["payload"]
    report = next(e for e in evs if e["event_type"] == "report.written")["payload"]
    final = decisions.final_verdict(finished["stages"], report["policy_violations"])
    merge = next((e["payload"] for e in evs if e["event_type"] == "merge.planned"), None)
    if end["payload"]["status"] == "FAIL":  # an internal error is an input, not a decision
        return (end["payload"]["status"], end["payload"]["reason"]), final
    if merge is None:
        return decisions.integrate_refused(end["payload"]["reason"]), final
    applied = [
        {"worker": e["payload"]["worker"], "ok": e["payload"]["ok"], "files": e["payload"]["files"]}
        for e in evs
        if e["event_type"] == "patch.applied"
    ]
    checks = [
        {k: e["payload"][k] for k in ("name", "required", "rc", "timed_out")}
        for e in evs
        if e["event_type"] == "check.finished"
    ]
    conflict = next((e["payload"]["error"] for e in evs if e["event_type"] == "patch.conflict"), "")
    violations = [
        {"path": e["payload"]["path"], "reason": e["payload"]["reason"]}
        for e in evs
        if e["event_type"] == "policy.violation" and e["seq"] < end["seq"]
    ]
    probes: list[isolation.Probe] = [
        {
            "step": e["payload"]["step"],
            "workers": e["payload"]["workers"],
            "passed": {
                c["name"]: c["rc"] == 0 and not c["timed_out"] for c in e["payload"]["checks"]
            },
        }
        for e in evs
        if e["event_type"] == "isolation.probe"
    ]
    found = None
    if probes:  # culprit isolation, recomputed from its recorded probes
        answer = isolation.step(
            merge["order"], merge["depends_on"], decisions.failed_required(checks), probes
        )
        assert isolation.is_result(answer)
        found = answer
    stage = decisions.with_policy(
        *decisions.integrate_outcome(
            merge["reason"],
            applied,
            checks,
            conflict,
            isolation=found,  # type: ignore[arg-type]
        ),
        violations,
    )
    return stage, final


def scenario(repo: Path, kind: str) -> tuple[str, str]:
    """Set up and integrate a run ending as ``kind`` says; (run ID, expected status)."""
    if kind == "check-fails":
        write_config(repo, {"checks": {"required": [
            {"name": "nope", "argv": ["{python}", "-c", "raise SystemExit(4)"]}]}})  # fmt: skip
    if kind == "cycle":
        plan = repo.parent / "plan.json"
        plan.write_text(json.dumps({"schema_version": 1, "workers": [
            {"id": "A", "allow": ["src/**"], "depends_on": []},
            {"id": "C", "allow": ["docs/**"]}]}), encoding="utf-8")  # fmt: skip
    run_id = launch_dry(repo)
    if kind == "does-not-apply":
        bad = b"diff --git a/src/app.py b/src/app.py\n--- a/src/app.py\n+++ b/src/app.py\n@@ -1 +1 @@\n-y = 2\n+z = 3\n"
        set_bundle(repo, run_id, "A", bad)
    else:
        set_bundle(repo, run_id, "A", make_patch(repo, {"src/app.py": "x = 2\n"}))
        set_bundle(repo, run_id, "C", make_patch(repo, {"docs/guide.md": "g2\n"}))
    if kind == "cycle":
        for w, dep in (("A", "C"), ("C", "A")):
            note = run_dir(repo, run_id) / f"{w}_worker" / "HANDOFF_NOTE.json"
            doc = json.loads(note.read_text(encoding="utf-8"))
            doc["depends_on"] = [dep]
            note.write_text(json.dumps(doc), encoding="utf-8")
    assert (
        run_cli(
            "--repo", str(repo), "--now", PINNED, "bundle-validate", "--run-id", run_id
        ).returncode
        == 0
    )
    if kind == "internal-error":  # the sandbox cannot be made: integrate fails (FAIL)
        (repo / "blocker").write_text("a file, not a folder\n", encoding="utf-8")
        write_config(repo, {"paths": {"sandbox_dir": "blocker/sub"}})
    if kind == "not-validated":  # VALIDATION.json is not the one the ledger recorded
        (run_dir(repo, run_id) / "VALIDATION.json").write_text("{}", encoding="utf-8")
    if kind == "write-refused":
        z = run_dir(repo, run_id) / "Z_integrator"
        z.rmdir()
        (repo.parent / "elsewhere").mkdir()
        z.symlink_to(repo.parent / "elsewhere", target_is_directory=True)
    expected = {"pass": "PASS", "check-fails": "BLOCKED", "does-not-apply": "BLOCKED",
                "cycle": "BLOCKED", "write-refused": "BLOCKED", "not-validated": "BLOCKED",
                "internal-error": "FAIL"}[kind]  # fmt: skip
    return run_id, expected


def replayed(repo: Path, run_id: str, evs: list[dict[str, Any]]) -> Any:
    """The replay fold of the same recorded events (the path ledger-replay takes)."""
    events = [Event.from_line(jsonio.canonical(e)) for e in evs]
    return fold(run_id, events, diskcheck.read_docs(run_dir(repo, run_id), run_id))


KINDS = [
    "pass",
    "check-fails",
    "does-not-apply",
    "cycle",
    "write-refused",
    "not-validated",
    "internal-error",
]


@pytest.mark.parametrize("kind", KINDS)
def test_recorded_verdicts_are_the_core_functions_of_recorded_inputs(
    tmp_path: Path, kind: str
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    run_id, expected = scenario(repo, kind)
    res = run_cli("--repo", str(repo), "--now", PINNED, "integrate", "--run-id", run_id)
    assert res.returncode == {"PASS": 0, "BLOCKED": 3, "FAIL": 1}[expected], res.stdout + res.stderr
    evs = events(repo, run_id)
    stage, final = recompute(evs)
    recorded_stage = next(
        e["payload"]
        for e in evs
        if e["event_type"] == "stage.finished" and e["stage"] == "integrate"
    )
    assert stage == (recorded_stage["status"], recorded_stage["reason"])
    finished = next(e["payload"] for e in evs if e["event_type"] == "run.finished")
    assert final == (finished["status"], finished["reasons"]) and final[0] == expected
    # The replay fold, given the same recorded events, recomputes the same verdicts.
    folded = replayed(repo, run_id, evs)
    assert folded.state.final["recomputed_status"] == expected
    assert folded.state.stages["integrate"]["status"] == stage[0]
    decided = [d for d in folded.divergences if "recomputed" in d.what or "stage" in d.what]
    assert decided == [], decided
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", run_id, "--json")
    found = [d["what"] for d in json.loads(replay.stdout)["divergences"]]
    if kind == "write-refused":  # Z's files could not be written anywhere: replay says so
        assert found == ["Z_integrator/STATUS.json", "Z_integrator/FINAL_REPORT.txt"]
    elif kind == "not-validated":  # the edited file itself is a divergence, the verdict is not
        assert found == ["VALIDATION.json"]
    else:
        assert found == [], replay.stdout[-2000:]
