"""A crank driven by a manifest: units, execution groups, per-unit scenarios and statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.loop.conftest import (
    MANIFEST,
    make_crank_repo,
    settle,
    unit_scenarios,
    write_manifest,
)
from tests.support.ledgers import ledger_lines, rewrite_ledger
from tests.support.repos import PINNED, git, run_cli
from tools.codex.factory.core import manifest as core_manifest
from tools.codex.factory.errors import UsageError
from tools.codex.factory.loop import manifests


def test_units_converge_at_once_after_feedback_or_are_escalated(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "unit", unit_scenarios())
    manifest = write_manifest(tmp_path / "spec")
    before = manifest.read_bytes()
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "crank", "--manifest", str(manifest), "--json",
        "--update-manifest",
    )  # fmt: skip
    data = json.loads(res.stdout)
    assert (data["decision"], data["kind"]) == ("AWAITING_REVIEW", "escalation"), res.stdout
    assert "unit sub (worker Usub) failed the same way 3 times" in data["reason"]
    code, data, out = settle(repo, res.returncode, data, res.stdout + res.stderr)
    assert code == 3, out
    assert (data["decision"], data["kind"]) == ("EXHAUSTED", "units")
    assert "unit(s) sub used their 3 attempt(s)" in data["reason"]
    # Group 1 (parallel): add and mul together, then mul alone; group 2: sub three times.
    runs = [
        e["payload"]["run_id"]
        for e in ledger_lines(repo)
        if e["event_type"] == "iteration.started" and e["run_id"] == data["crank_id"]
    ]
    assert len(runs) == 5
    launched = [
        sorted(
            json.loads((repo / "tools/codex/runs" / r / "RUN_MANIFEST.json").read_text())["workers"]
        )
        for r in runs
    ]
    assert launched == [["Uadd", "Udiv", "Umul"], ["Umul"], ["Usub"], ["Usub"], ["Usub"]]
    folder = repo / "tools/codex/runs" / data["crank_id"]
    copy = (folder / "MANIFEST.md").read_text()
    assert "- [x] add: Addition" in copy and "- [x] mul: Multiplication" in copy
    assert "- [ ] sub: Subtraction" in copy and "status: failed" in copy
    # The operator's file: the same marks, every other byte as it was.
    assert manifest.read_text() == copy
    assert len(manifest.read_bytes()) == len(before) + len("failed") - len("pending")
    # mul's second prompt held its own feedback, which names only its scenarios.
    prompt = (repo / "tools/codex/runs" / runs[1] / "Umul_worker/PROMPT.md").read_text()
    assert "### Feedback from the previous iteration" in prompt and "(mul)" in prompt
    assert "(add)" not in prompt
    # Each unit worked only on its own file; the crank branch holds add and mul.
    tip = data["tip"]
    assert git(repo, "show", f"{tip}:src/mul.py").strip().endswith("return a * b")
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", data["crank_id"])
    assert replay.returncode == 0, replay.stdout


def test_a_bad_manifest_is_one_line_naming_line_and_rule(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "unit", unit_scenarios())
    bad = (
        write_manifest(tmp_path / "spec")
        .read_text()
        .replace("Group 2 (sequential): sub", "Group 2 (sequential): sub, mod")
    )
    manifest = tmp_path / "spec" / "manifest.md"
    manifest.write_text(bad)
    res = run_cli("--repo", str(repo), "crank", "--manifest", str(manifest))
    assert res.returncode == 2
    (line,) = res.stderr.strip().splitlines()
    assert "manifest.md: line 15:" in line and "mod" in line and "[unknown-unit]" in line


def test_a_resume_skips_the_completed_units(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "unit", unit_scenarios())
    manifest = write_manifest(tmp_path / "spec")
    marker = tmp_path / "crashed"
    env = {"CRANK_TEST_CRASH_MARKER": str(marker)}
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "crank", "--manifest", str(manifest),
        "--crank-id", "m1", env=env, real=True,
    )  # fmt: skip
    assert res.returncode != 0 and marker.exists(), res.stdout + res.stderr
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "crank", "--resume", "--crank-id", "m1", "--json",
        env=env, real=True,
    )  # fmt: skip
    code, data, out = settle(repo, res.returncode, json.loads(res.stdout), res.stdout)
    assert code == 3, out
    mine = [e for e in ledger_lines(repo) if e["run_id"] == "m1"]
    resumed = next(i for i, e in enumerate(mine) if e["event_type"] == "crank.resumed")
    data["runs"] = [  # the runs after the resume
        e["payload"]["run_id"] for e in mine[resumed:] if e["event_type"] == "iteration.started"
    ]
    launched = [
        sorted(
            json.loads((repo / "tools/codex/runs" / r / "RUN_MANIFEST.json").read_text())["workers"]
        )
        for r in data["runs"]
    ]
    assert launched == [["Usub"], ["Usub"], ["Usub"]]  # add, mul and div are not run again
    assert "unit(s) sub used their 3 attempt(s)" in data["reason"]
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", "m1")
    assert replay.returncode == 0, replay.stdout


def test_a_rechained_unit_status_is_recomputed(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "unit", unit_scenarios())
    manifest = write_manifest(tmp_path / "spec")
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "crank", "--manifest", str(manifest),
        "--crank-id", "m2",
    )  # fmt: skip
    assert res.returncode == 3, res.stdout + res.stderr
    events = ledger_lines(repo)
    decided = [e for e in events if e["event_type"] == "iteration.decided"]
    decided[0]["payload"]["state"]["mul"] = "completed"
    decided[0]["payload"]["units"][2]["passed"] = True  # add, div, mul: mul failed
    rewrite_ledger(repo, events)
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", "m2")
    assert replay.returncode == 3
    assert "iteration 1 unit attempts" in replay.stdout
    assert "iteration 1 unit statuses" in replay.stdout
    # a feedback file recorded for a unit the manifest has not: one divergence, no traceback
    fed = next(
        e for e in events if e["event_type"] == "feedback.compiled" and e["payload"].get("unit")
    )
    fed["payload"]["unit"] = "nosuch"
    rewrite_ledger(repo, events)
    replay = run_cli("--repo", str(repo), "ledger-replay", "--run-id", "m2", "--json")
    assert replay.returncode == 3, replay.stdout + replay.stderr
    whats = [d["what"] for d in json.loads(replay.stdout)["divergences"]]
    assert any(w.endswith(" unit") and "feedback_iter_" in w for w in whats), whats


def test_the_json_form_makes_the_same_plan(tmp_path: Path) -> None:
    markdown = write_manifest(tmp_path / "spec")
    md = manifests.load(markdown)
    doc = dict(core_manifest.to_doc(md.manifest))
    as_json = tmp_path / "spec" / "manifest.json"
    as_json.write_text(json.dumps(doc))
    js = manifests.load(as_json)
    assert js.manifest == md.manifest and js.plan.as_dict() == md.plan.as_dict()
    doc["groups"][1]["units"] = ["sub", "sub"]
    as_json.write_text(json.dumps(doc))
    with pytest.raises(UsageError, match=r"manifest\.json: "):
        manifests.load(as_json)


def test_a_scenario_outside_every_unit_is_refused(tmp_path: Path) -> None:
    scenarios = {
        **unit_scenarios(),
        "scenarios/orphan.md": unit_scenarios()["scenarios/add/add.md"],
    }
    repo = make_crank_repo(tmp_path / "repo", "unit", scenarios)
    manifest = write_manifest(tmp_path / "spec")
    res = run_cli("--repo", str(repo), "crank", "--manifest", str(manifest))
    assert res.returncode == 2
    assert "scenario scenarios/orphan.md belongs to no unit of the manifest" in res.stderr


def test_update_manifest_keeps_the_operator_s_edits_and_its_place(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "unit", unit_scenarios())
    manifest = write_manifest(
        tmp_path / "spec", MANIFEST.replace("max_iterations: 3", "max_iterations: 1")
    )
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "crank", "--manifest", "spec/manifest.md",
        "--update-manifest", "--gates", "spec=review,plan=auto,ship=auto", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert json.loads(res.stdout)["kind"] == "spec", res.stdout + res.stderr
    manifest.write_text(manifest.read_text() + "\nA note the operator added while it waited.\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "approve", "--crank-id",
        json.loads(res.stdout)["crank_id"], "--by", "Al", "--json", cwd=elsewhere,
    )  # fmt: skip
    _code, _data, out = settle(
        repo, res.returncode, json.loads(res.stdout), res.stdout + res.stderr
    )
    text = manifest.read_text()
    assert "A note the operator added while it waited." in text, out
    assert "- [x] add: Addition" in text and "status: failed" in text
    assert not (elsewhere / "spec").exists()


def test_a_json_manifest_pauses_and_resumes(tmp_path: Path) -> None:
    repo = make_crank_repo(tmp_path / "repo", "unit", unit_scenarios())
    md = write_manifest(tmp_path / "spec")
    as_json = tmp_path / "spec" / "manifest.json"
    as_json.write_text(json.dumps(dict(core_manifest.to_doc(manifests.load(md).manifest))))
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "crank", "--manifest", str(as_json), "--gates",
        "spec=auto,plan=review,ship=auto", "--json",
    )  # fmt: skip
    data = json.loads(res.stdout)
    assert data["kind"] == "plan", res.stdout + res.stderr
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "approve", "--crank-id", data["crank_id"], "--by",
        "Al", "--json",
    )  # fmt: skip
    code, data, out = settle(repo, res.returncode, json.loads(res.stdout), res.stdout + res.stderr)
    assert (code, data["decision"]) == (3, "EXHAUSTED"), out
    copy = json.loads((repo / "tools/codex/runs" / data["crank_id"] / "MANIFEST.md").read_text())
    assert [u["done"] for u in copy["units"]] == [True, True, False, True]


def test_the_operator_s_feedback_reaches_a_unit_beside_its_own(tmp_path: Path) -> None:
    only_sub = {"scenarios/sub/sub.md": unit_scenarios()["scenarios/sub/sub.md"]}
    repo = make_crank_repo(tmp_path / "repo", "unit", only_sub)
    text = (
        "---\ntitle: Sub\nstatus: pending\nthreshold: 1.0\nmax_iterations: 6\n---\n"
        "## Units\n- [ ] sub: Subtraction — no dependencies\n\n"
        "## Execution Order\nGroup 1 (sequential): sub\n"
    )
    manifest = write_manifest(tmp_path / "spec", text)
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "crank", "--manifest", str(manifest), "--json",
        "--crank-id", "s1",
    )  # fmt: skip
    data = json.loads(res.stdout)
    assert "failed the same way 3 times" in data["reason"], res.stdout + res.stderr
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "reject", "--crank-id", "s1", "--gate",
        "escalation", "--by", "Al", "--feedback", "Subtract, do not add: OPERATOR-NOTE-7",
        "--json",
    )  # fmt: skip
    prompt = (repo / "tools/codex/runs/s1.i4/Usub_worker/PROMPT.md").read_text()
    assert "OPERATOR-NOTE-7" in prompt and "(sub): fail" in prompt  # both feedbacks
    res = run_cli("--repo", str(repo), "--now", PINNED, "approve", "--crank-id", "s1", "--by", "Al")
    later = (repo / "tools/codex/runs/s1.i5/Usub_worker/PROMPT.md").read_text()
    assert "OPERATOR-NOTE-7" not in later, res.stdout + res.stderr  # given once


def test_marking_keeps_edits_to_a_json_manifest_and_refuses_changed_units(tmp_path: Path) -> None:
    md = write_manifest(tmp_path / "spec")
    loaded = manifests.load(md)
    as_json = tmp_path / "spec" / "manifest.json"
    doc = dict(core_manifest.to_doc(loaded.manifest))
    as_json.write_text(json.dumps(doc))
    js = manifests.load(as_json)
    state = {"add": "completed", "mul": "in_progress", "sub": "pending", "div": "completed"}
    doc["title"] = "Calculator, renamed by the operator"
    as_json.write_text(json.dumps(doc))
    said = manifests.mark_file(as_json, js, state, "in_progress")
    assert said.startswith("factory: marked progress"), said
    now = json.loads(as_json.read_text())
    assert now["title"] == "Calculator, renamed by the operator"
    assert [u["done"] for u in now["units"]] == [True, False, False, True]
    doc["units"] = doc["units"][:3]
    doc["groups"][0]["units"] = ["add", "mul"]
    as_json.write_text(json.dumps(doc))
    said = manifests.mark_file(as_json, js, state, "in_progress")
    assert "not marked" in said
    del doc["threshold"]  # a malformed file is a warning, never a traceback
    as_json.write_text(json.dumps(doc))
    assert "not marked" in manifests.mark_file(as_json, js, state, "in_progress")
