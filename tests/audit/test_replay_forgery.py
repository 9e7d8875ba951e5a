"""ledger-replay against a forger who rewrites the ledger consistently (re-chained, head file too).

- recorded ``bundle.facts`` are re-derived from the bundle bytes their hash pins, so forged facts
  are caught even when every decision, VALIDATION.json, the manifest and the plan hash were
  forged to match;
- the policy in ``validation.decided``, the checks in ``check.finished`` and merge.planned's
  strict flag must be the run's own settings (RUN_MANIFEST.json ``config``), as launched;
- events beyond the head printed in FINAL_REPORT.txt are listed; those after ``run.finished``
  are said to be unanchored unless a later run's report anchors them, and then a removed one
  is caught.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.audit.test_replay import (
    CONFIG_REL,
    FAILING_CHECK,
    LEDGER,
    _split_run,
    ledger_lines,
    ok,
    replay_json,
    rewrite_ledger,
    whats,
)
from tests.support.scratch import BASE_FILES, RUNS_REL, factory, make_repo, scratch_env
from tests.support.workers import agent_env, cli, work_repo
from tools.codex.factory.core import validation
from tools.codex.factory.infra import jsonio

SCOPE_RUN = "run-scope"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return scratch_env(tmp_path / "home")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("replay-forgery")
    env = scratch_env(root / "home")
    out: dict[str, Path] = {}
    # Validated only (no report, so no ledger head printed anywhere): A edits README.md, outside
    # its scope (src/**, ...): BLOCKED by scope.
    repo = make_repo(root / "scope", env)
    ok(
        factory(
            repo,
            env,
            "launch",
            "--base-ref",
            "HEAD",
            "--dry-run",
            "--run-id",
            SCOPE_RUN,
            "--workers",
            "A,B",
        )
    )
    from tests.support.scratch import bundle_from_changes

    bundle_from_changes(
        repo, env, SCOPE_RUN, "A", {"README.md": BASE_FILES["README.md"] + "more\n"}
    )
    ok(factory(repo, env, "bundle-validate", "--run-id", SCOPE_RUN), 3)
    out["scope"] = repo
    # A required check that fails: BLOCKED by the check.
    repo = make_repo(root / "check", env)
    (repo / CONFIG_REL).parent.mkdir(parents=True, exist_ok=True)
    (repo / CONFIG_REL).write_bytes(jsonio.pretty(FAILING_CHECK))
    _split_run(
        repo,
        env,
        "run-check",
        {"A": {"src/app.py": BASE_FILES["src/app.py"] + "# A\n"}},
        "--workers",
        "A,B",
        expect_integrate=3,
    )
    out["check"] = repo
    # PASS, with the default checks.
    repo = make_repo(root / "pass", env)
    _split_run(
        repo,
        env,
        "run-pass",
        {"A": {"src/app.py": BASE_FILES["src/app.py"] + "# A\n"}},
        "--workers",
        "A,B",
    )
    out["pass"] = repo
    return out


def copy(built: dict[str, Path], name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(built[name], dest, symlinks=True)
    return dest


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def first(events: list[dict[str, Any]], event_type: str, **payload: Any) -> dict[str, Any]:
    return next(
        e
        for e in events
        if e["event_type"] == event_type
        and all(e["payload"].get(k) == v for k, v in payload.items())
    )


# -- recorded facts are re-derived from the bundle -----------------------------------------------------
def test_consistent_runs_rederive_every_bundles_facts(
    built: dict[str, Path], env: dict[str, str]
) -> None:
    state = replay_json(built["pass"], env, "run-pass", 0)["state"]
    assert state["facts_rederived"] == 2
    state = replay_json(built["scope"], env, SCOPE_RUN, 0)["state"]
    assert state["facts_rederived"] == 2 and state["validation"]["status"] == "BLOCKED"


def test_a_complete_forgery_of_a_widened_scope_is_caught_by_the_bundle(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    """The reviewer's forger: facts.scope.allow = ["**"], the plan and manifest to match, the
    decisions, VALIDATION.json and its recorded sha256 recomputed, the ledger re-chained. Every
    recorded input then agrees with every recorded output; only the bundle still says otherwise."""
    from tools.codex.factory.run import validate

    repo = copy(built, "scope", tmp_path)
    run = repo / RUNS_REL / SCOPE_RUN
    events = ledger_lines(repo)
    manifest = json.loads((run / "RUN_MANIFEST.json").read_bytes())
    for w in manifest["plan"]["workers"]:
        if w["id"] == "A":
            w["allow"] = ["**"]
    manifest["plan_hash"] = sha(jsonio.canonical(manifest["plan"]))
    manifest_bytes = jsonio.pretty(manifest)
    (run / "RUN_MANIFEST.json").write_bytes(manifest_bytes)
    first(events, "run.started")["payload"]["plan_hash"] = manifest["plan_hash"]
    first(events, "artifacts.written")["payload"]["files"]["RUN_MANIFEST.json"] = sha(
        manifest_bytes
    )
    first(events, "manifest.written")["payload"]["sha256"] = sha(manifest_bytes)

    facts = {
        e["payload"]["worker"]: e["payload"]["facts"]
        for e in events
        if e["event_type"] == "bundle.facts"
    }
    facts["A"]["scope"]["allow"] = ["**"]
    policy = validate.policy(manifest)
    result = validation.evaluate(facts, policy)
    assert result["status"] == "PASS"  # the forged inputs give the forged verdict
    workers = sorted(facts)
    doc = {
        "schema_version": 1,
        "run_id": SCOPE_RUN,
        "workers": workers,
        "bundle_hashes": {w: facts[w]["bundle_hash"] for w in workers},
        "apply_sha256": {w: facts[w]["apply_sha256"] for w in workers},
        "depends_on": {w: facts[w]["depends_on"] for w in workers},
        "eol_normalised": {w: facts[w]["eol_normalised"] for w in workers},
        "files_sha256": {w: facts[w]["files_sha256"] for w in workers},
        "policy": policy,
        **result,
    }
    validation_bytes = jsonio.pretty(doc)
    (run / "VALIDATION.json").write_bytes(validation_bytes)
    decided = first(events, "validation.decided")["payload"]
    decided.update(
        status="PASS",
        verdicts=result["verdicts"],
        findings=0,
        overlaps=result["overlaps"],
        policy=policy,
        validation_sha256=sha(validation_bytes),
    )
    stage = next(
        e for e in events if e["event_type"] == "stage.finished" and e["stage"] == "bundle-validate"
    )
    stage["payload"].update(status="PASS", reason="")
    rewrite_ledger(repo, events)
    # The run index still holds the old lines (replay would name the rewrite at the ledger's
    # end); it is only a cache, and a complete forger deletes it.
    (repo / RUNS_REL / "factory_ledger.index.sqlite3").unlink()

    data = replay_json(repo, env, SCOPE_RUN, 3, cli=True)
    assert whats(data) == [
        "recorded facts for A differ from the bundle A_worker/ (re-derived by facts.gather_facts): scope"
    ]
    d = data["divergences"][0]
    assert d["seq"] == first(events, "bundle.facts", worker="A")["seq"]
    assert '"src/**"' in d["expected"] and '"allow":["**"]' in d["found"]


def test_hidden_touched_path_is_caught_by_the_bundle(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    repo = copy(built, "pass", tmp_path)
    events = ledger_lines(repo)
    first(events, "bundle.facts", worker="A")["payload"]["facts"]["touched"] = []
    rewrite_ledger(repo, events)
    found = whats(replay_json(repo, env, "run-pass", 3))
    assert any(
        w.startswith("recorded facts for A differ from the bundle A_worker/")
        and w.endswith(": touched")
        for w in found
    ), found


def test_facts_of_a_bundle_that_changed_since_are_not_rederived(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    """A bundle whose hash no longer matches is reported once (bundle hash), not re-read."""
    repo = copy(built, "scope", tmp_path)
    (repo / RUNS_REL / SCOPE_RUN / "A_worker" / "SUMMARY.md").write_text(
        "changed\n", encoding="utf-8"
    )
    data = replay_json(repo, env, SCOPE_RUN, 3)
    assert data["state"]["facts_rederived"] == 1
    assert not any(w.startswith("recorded facts for A") for w in whats(data))
    assert any(w.startswith("A_worker/ bundle hash") for w in whats(data)), whats(data)


# -- the run's own settings (RUN_MANIFEST.json config) ---------------------------------------------------
def test_policy_must_be_the_runs_own(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    repo = copy(built, "pass", tmp_path)
    events = ledger_lines(repo)
    policy = first(events, "validation.decided")["payload"]["policy"]
    dropped = policy["protected_paths"].pop()
    policy["allow_identical_patch_overlap"] = True
    rewrite_ledger(repo, events)
    data = replay_json(repo, env, "run-pass", 3)
    policy_divs = {
        d["what"]: d
        for d in data["divergences"]
        if d["what"].startswith("validation.decided policy")
    }
    assert set(policy_divs) == {
        "validation.decided policy protected_paths (derived from RUN_MANIFEST.json: config and plan)",
        "validation.decided policy allow_identical_patch_overlap (derived from RUN_MANIFEST.json: config and plan)",
    }, whats(data)
    assert (
        dropped
        in policy_divs[
            "validation.decided policy protected_paths (derived from RUN_MANIFEST.json: config and plan)"
        ]["expected"]
    )


def test_a_dropped_check_is_a_divergence(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    """The failing required check vanishes from the ledger and the integrate stage says PASS."""
    repo = copy(built, "check", tmp_path)
    events = [e for e in ledger_lines(repo) if e["event_type"] != "check.finished"]
    for e in events:
        if e["event_type"] == "stage.finished" and e["stage"] == "integrate":
            e["payload"].update(status="PASS", reason="")
    rewrite_ledger(repo, events)
    data = replay_json(repo, env, "run-check", 3)
    want = "check.finished events vs the checks of the run (RUN_MANIFEST.json config.checks.required/advisory)"
    got = [d for d in data["divergences"] if d["what"] == want]
    assert got, whats(data)
    assert "always-fails" in got[0]["expected"] and got[0]["found"] == "[]"


def test_a_renamed_or_reargued_check_is_a_divergence(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    repo = copy(built, "pass", tmp_path)
    events = ledger_lines(repo)
    check = first(events, "check.finished")
    check["payload"]["argv"] = ["{python}", "-c", "pass"]
    check["payload"]["output_tail"] = {"stdout": "", "stderr": ""}  # the flag is off for this run
    rewrite_ledger(repo, events)
    found = whats(replay_json(repo, env, "run-pass", 3))
    assert (
        "check.finished events vs the checks of the run (RUN_MANIFEST.json config.checks.required/advisory)"
        in found
    )
    assert (
        "check.finished output_tail (feature_flags.record_check_output_in_ledger in RUN_MANIFEST.json)"
        in found
    ), found


def test_merge_strict_flag_must_be_the_runs_own(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    repo = copy(built, "pass", tmp_path)
    events = ledger_lines(repo)
    first(events, "merge.planned")["payload"]["strict"] = True
    rewrite_ledger(repo, events)
    found = whats(replay_json(repo, env, "run-pass", 3))
    assert (
        "merge.planned strict (feature_flags.strict_handoff_dependencies in RUN_MANIFEST.json)"
        in found
    ), found


def test_the_manifest_is_pinned_by_launchs_manifest_written(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    """Without a report (nothing vouches for it later), launch's pin of RUN_MANIFEST.json does
    (its one manifest.written; artifacts.written repeats the same hash)."""
    repo = copy(built, "scope", tmp_path)
    path = repo / RUNS_REL / SCOPE_RUN / "RUN_MANIFEST.json"
    manifest = json.loads(path.read_bytes())
    manifest["config"]["checks"]["required"] = []
    path.write_bytes(jsonio.pretty(manifest))
    found = whats(replay_json(repo, env, SCOPE_RUN, 3))
    assert "RUN_MANIFEST.json (recorded by manifest.written)" in found, found


# -- what the report's ledger head anchors ---------------------------------------------------------------
def test_the_anchor_of_a_run_without_an_epilogue(
    built: dict[str, Path], env: dict[str, str]
) -> None:
    data = replay_json(built["pass"], env, "run-pass", 0, cli=True)
    anchor = data["state"]["anchor"]
    events = ledger_lines(built["pass"])
    head = json.loads(
        (built["pass"] / RUNS_REL / "run-pass" / "Z_integrator" / "STATUS.json").read_bytes()
    )["ledger_head"]
    assert anchor["report_head"] == head
    assert [e["event_type"] for e in anchor["beyond_report_head"]] == [
        "report.written",
        "run.finished",
    ]
    assert anchor["after_run_finished"] == [] and anchor["anchored_by_later_report"] is None
    assert [e["seq"] for e in anchor["beyond_report_head"]] == [
        e["seq"] for e in events if e["seq"] > head["seq"]
    ]


def test_an_edited_line_below_the_anchored_head_is_named(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    """Not re-chained: the line no longer hashes as recorded, below the head the report printed."""
    repo = copy(built, "pass", tmp_path)
    events = ledger_lines(repo)
    target = first(events, "stage.started")
    target["payload"]["kind"] = "forged"
    rewrite_ledger(repo, events, rechain=False, head=False)
    data = replay_json(repo, env, "run-pass", 3)
    below = [
        d
        for d in data["divergences"]
        if d["what"].startswith(f"ledger line seq {target['seq']} (at or below the head")
    ]
    assert below and below[0]["seq"] == target["seq"], whats(data)


def test_a_report_on_disk_without_its_events_is_caught(
    built: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    """report.written and run.finished both removed (the tail, re-chained): the report on disk says so."""
    repo = copy(built, "pass", tmp_path)
    events = ledger_lines(repo)
    assert [e["event_type"] for e in events[-2:]] == ["report.written", "run.finished"]
    rewrite_ledger(repo, events[:-2])
    found = whats(replay_json(repo, env, "run-pass", 3))
    assert "Z_integrator/FINAL_REPORT.txt (no report.written event records it)" in found, found


def test_events_after_run_finished_are_listed_and_anchored_only_by_a_later_report(
    tmp_path: Path,
) -> None:
    """A real worker's worktree is removed after run.finished: that event is not covered by the
    run's own report. Once a later run's report is written its head covers it, and removing the
    event (re-chained, head file rewritten) is caught there."""
    repo = work_repo(tmp_path)
    agent = agent_env(tmp_path / "spec.json", {"A": {"write": {"src/a.py": "a = 1\n"}}})
    res = cli(repo, "oneshot", "--workers", "A", "--run-id", "epi-1", env=agent)
    assert res.returncode == 0, res.stdout + res.stderr
    events = [e for e in ledger_lines(repo) if e["run_id"] == "epi-1"]
    finished = max(e["seq"] for e in events if e["event_type"] == "run.finished")
    epilogue = [e for e in events if e["seq"] > finished]
    assert [e["event_type"] for e in epilogue] == ["worktree.removed"]

    res = cli(repo, "ledger-replay", "--run-id", "epi-1")
    assert res.returncode == 0 and res.stdout.rstrip().endswith("REPLAY OK"), (
        res.stdout + res.stderr
    )
    assert (
        f"anchor: 1 event(s) after run.finished are NOT covered by the report's anchor: "
        f"seq {epilogue[0]['seq']} worktree.removed"
    ) in res.stdout
    assert "not detectable by replay" in res.stdout
    anchor = json.loads(cli(repo, "ledger-replay", "--run-id", "epi-1", "--json").stdout)["state"][
        "anchor"
    ]
    assert anchor["after_run_finished"] == [
        {"seq": epilogue[0]["seq"], "event_type": "worktree.removed"}
    ]
    assert epilogue[0]["seq"] in [e["seq"] for e in anchor["unanchored"]]
    assert anchor["anchored_by_later_report"] is None

    res = cli(repo, "oneshot", "--dry-run", "--run-id", "epi-2")
    assert res.returncode == 0, res.stdout + res.stderr
    res = cli(repo, "ledger-replay", "--run-id", "epi-1", "--json")
    assert res.returncode == 0, res.stdout
    anchor = json.loads(res.stdout)["state"]["anchor"]
    assert anchor["anchored_by_later_report"]["run_id"] == "epi-2" and anchor["unanchored"] == []
    assert (
        "covered instead by tools/codex/runs/epi-2/Z_integrator/FINAL_REPORT.txt"
        in cli(repo, "ledger-replay", "--run-id", "epi-1").stdout
    )

    everything = ledger_lines(repo)
    rewrite_ledger(repo, [e for e in everything if e["seq"] != epilogue[0]["seq"]])
    assert ok(
        cli(repo, "ledger", "verify")
    )  # the chain and head file agree: only the anchor can tell
    res = cli(repo, "ledger-replay", "--run-id", "epi-1", "--json")
    assert res.returncode == 3, res.stdout + res.stderr
    found = whats(json.loads(res.stdout))
    assert any(
        w.startswith(
            "ledger head recorded in tools/codex/runs/epi-2/Z_integrator/FINAL_REPORT.txt ledger head "
            "(a later run's report)"
        )
        for w in found
    ), found
    assert (repo / LEDGER).is_file()
