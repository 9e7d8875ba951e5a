"""ledger-replay: consistent runs replay OK; edited artifacts, re-chained ledgers and cut tails do not.

Scenarios are real runs in scratch repositories (real git, real patches, the real CLI in a
child process), built once per module; every tamper test works on its own copy.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.ledgers import LEDGER, ledger_lines, rewrite_ledger
from tests.support.scratch import (
    BASE_FILES,
    OVERLAP_PLAN,
    RUNS_REL,
    bundle_from_changes,
    factory,
    make_repo,
    scratch_env,
)
from tools.codex.factory.audit.replay import replay
from tools.codex.factory.cli import render
from tools.codex.factory.infra import jsonio
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.ledger.store import Ledger
from tools.codex.factory.run.context import Context

CONFIG_REL = "tools/codex/factory/factory.config.json"
FAILING_CHECK = {
    "schema_version": 1,
    "checks": {
        "required": [
            {
                "name": "always-fails",
                "argv": ["{python}", "-c", "raise SystemExit(1)"],
                "timeout_s": 60,
            }
        ]
    },
}


def ok(res: Any, code: int = 0) -> Any:
    assert res.returncode == code, (
        f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    )
    return res


def _split_run(
    repo: Path,
    env: dict[str, str],
    run_id: str,
    changes: dict[str, dict[str, str]],
    *launch_extra: str,
    expect_validate: int = 0,
    expect_integrate: int = 0,
    before_integrate: Callable[[], None] | None = None,
) -> None:
    ok(
        factory(
            repo,
            env,
            "launch",
            "--base-ref",
            "HEAD",
            "--dry-run",
            "--run-id",
            run_id,
            *launch_extra,
        )
    )
    for worker, change in changes.items():
        bundle_from_changes(repo, env, run_id, worker, change)
    ok(factory(repo, env, "bundle-validate", "--run-id", run_id), expect_validate)
    if before_integrate is not None:
        before_integrate()
    ok(factory(repo, env, "integrate", "--run-id", run_id), expect_integrate)


def build_scenarios(root: Path) -> dict[str, tuple[Path, str, str]]:
    """{name: (repo, run_id, expected status)}; each scenario in a repository of its own."""
    env = scratch_env(root / "home")
    out: dict[str, tuple[Path, str, str]] = {}

    repo = make_repo(root / "pass", env)
    _split_run(
        repo,
        env,
        "run-pass",
        {
            "A": {"src/app.py": BASE_FILES["src/app.py"].replace("hello ", "hello, ")},
            "B": {
                "tests/test_app.py": BASE_FILES["tests/test_app.py"].replace(
                    "'hello x'", "'hello, x'"
                ),
                "tests/test_new.py": "def test_new():\n    assert 2 + 2 == 4\n",
            },
        },
        "--workers",
        "A,B",
    )
    out["pass"] = (repo, "run-pass", "PASS")

    repo = make_repo(root / "oneshot", env)
    ok(factory(repo, env, "oneshot", "--base-ref", "HEAD", "--dry-run", "--run-id", "run-oneshot"))
    out["oneshot"] = (repo, "run-oneshot", "PASS")

    repo = make_repo(root / "overlap", env)
    plan = root / "overlap-plan.json"
    plan.write_bytes(jsonio.pretty(OVERLAP_PLAN))
    _split_run(
        repo,
        env,
        "run-overlap",
        {
            "A": {"src/app.py": BASE_FILES["src/app.py"] + "\nVERSION = 1\n"},
            "B": {
                "src/app.py": "# B\n" + BASE_FILES["src/app.py"],
                "tests/test_app.py": BASE_FILES["tests/test_app.py"] + "# more\n",
            },
        },
        "--workers",
        "A,B",
        "--plan",
        str(plan),
        expect_validate=3,
        expect_integrate=3,
    )
    out["overlap"] = (repo, "run-overlap", "BLOCKED")

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
    out["check"] = (repo, "run-check", "BLOCKED")

    repo = make_repo(root / "fail", env)

    def sabotage() -> None:  # a file where integrate puts its sandbox folder: an internal error
        (repo / RUNS_REL / "run-fail" / "sandbox").write_bytes(b"not a folder\n")

    _split_run(
        repo,
        env,
        "run-fail",
        {"A": {"src/app.py": BASE_FILES["src/app.py"] + "# A\n"}},
        "--workers",
        "A,B",
        expect_integrate=1,
        before_integrate=sabotage,
    )
    out["fail"] = (repo, "run-fail", "FAIL")

    repo = make_repo(root / "preflight", env)
    ok(
        factory(
            repo,
            env,
            "oneshot",
            "--base-ref",
            "no-such-ref",
            "--dry-run",
            "--run-id",
            "run-preflight",
        ),
        3,
    )
    ok(factory(repo, env, "oneshot", "--base-ref", "HEAD", "--dry-run", "--run-id", "run-after"))
    ok(
        factory(repo, env, "oneshot", "--base-ref", "HEAD", "--dry-run", "--run-id", "run-after"), 3
    )  # taken
    out["preflight"] = (repo, "run-preflight", "BLOCKED")
    return out


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str, str]]:
    return build_scenarios(tmp_path_factory.mktemp("replay-scenarios"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return scratch_env(tmp_path / "home")


def copy_of(
    scenarios: dict[str, tuple[Path, str, str]], name: str, tmp_path: Path
) -> tuple[Path, str, str]:
    repo, run_id, status = scenarios[name]
    dest = tmp_path / name
    shutil.copytree(repo, dest, symlinks=True)
    return dest, run_id, status


def replay_json(
    repo: Path, env: dict[str, str], run_id: str, code: int, cli: bool = False
) -> dict[str, Any]:
    """The replay's JSON: through the real CLI (``cli``), or in-process (same function, faster)."""
    if cli:
        res = ok(factory(repo, env, "ledger-replay", "--run-id", run_id, "--json"), code)
        data: dict[str, Any] = json.loads(res.stdout)
        return data
    ctx = Context(repo_opt=repo, clock=Clock(None))
    try:
        outcome = replay(ctx, run_id)
    finally:
        ctx.close()
    assert outcome.exit_code == code, render.text(outcome)
    assert isinstance(outcome.data, dict)
    return json.loads(jsonio.canonical(outcome.data))


def whats(data: dict[str, Any]) -> list[str]:
    return [d["what"] for d in data["divergences"]]


# -- ledger surgery (what a forger would do): tests/support/ledgers.py ---------------------------
def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    assert data, f"{path} is empty"
    start = len(data) // 2
    for i in list(range(start, len(data))) + list(range(start)):
        if 0x61 <= data[i] <= 0x7A:  # a lower-case ASCII letter: upper-case it
            data[i] -= 0x20
            break
    else:
        data[start] ^= 0x01
    path.write_bytes(bytes(data))


# -- consistent runs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pass", "oneshot", "overlap", "check", "fail"])
def test_consistent_run_replays_ok(
    scenarios: dict[str, tuple[Path, str, str]], env: dict[str, str], name: str
) -> None:
    repo, run_id, status = scenarios[name]
    res = ok(factory(repo, env, "ledger-replay", "--run-id", run_id))
    assert res.stdout.rstrip().endswith("REPLAY OK")
    assert f"final {status} (recomputed {status})" in res.stdout
    events = ledger_lines(repo)
    timeline = [ln for ln in res.stdout.splitlines() if ln[:6].strip().isdigit()]
    assert len(timeline) == len(events)  # one line per event
    data = replay_json(repo, env, run_id, 0, cli=True)
    assert data["ok"] is True and data["divergences"] == []
    state = data["state"]
    assert state["final"]["status"] == status == state["final"]["recomputed_status"]
    assert state["finished"] is True
    assert state["artifacts_checked"] > 10


def test_replayed_state_holds_the_recomputed_decisions(
    scenarios: dict[str, tuple[Path, str, str]], env: dict[str, str]
) -> None:
    overlap = replay_json(scenarios["overlap"][0], env, "run-overlap", 0)["state"]
    assert overlap["validation"]["status"] == "BLOCKED"
    assert overlap["validation"]["verdicts"] == {"A": "BLOCKED", "B": "BLOCKED"}
    assert overlap["validation"]["overlaps"] == [
        {"path": "src/app.py", "workers": ["A", "B"], "resolution": "blocked"}
    ]
    assert {f["rule"] for f in overlap["validation"]["findings"]} == {"overlap"}
    assert overlap["stages"]["integrate"]["status"] == "BLOCKED"
    check = replay_json(scenarios["check"][0], env, "run-check", 0)["state"]
    assert check["checks"] == [
        {"name": "always-fails", "required": True, "rc": 1, "timed_out": False}
    ]
    assert check["check_status"] == "BLOCKED"
    assert check["merge"]["order"] == ["A", "B"]
    passed = replay_json(scenarios["pass"][0], env, "run-pass", 0)["state"]
    assert [p["worker"] for p in passed["patches"] if p["ok"]] == ["A", "B"]
    assert passed["check_status"] == "PASS"


# -- an edited artifact is named ------------------------------------------------------------------------
EDITS = {
    "pass": [
        "A_worker/DIFF.patch",
        "B_worker/FILES_CHANGED.json",
        "RUN_MANIFEST.json",
        "VALIDATION.json",
        "Z_integrator/DIFF.patch",
        "Z_integrator/MERGE_PLAN.md",
        "attestations/bundles.sha256",
    ],
    "oneshot": [
        "C_worker/SUMMARY.md",
        "Z_integrator/LOGS/INDEX.json",
        "attestations/ledger_excerpt.jsonl",
    ],
    "overlap": ["B_worker/DIFF.patch", "VALIDATION.json", "Z_integrator/FINAL_REPORT.txt"],
    "check": [
        "Z_integrator/LOGS/check-always-fails.stderr.log",
        "Z_integrator/STATUS.json",
        "A_worker/SCOPE_LOCK.json",
    ],
}


@pytest.mark.parametrize(("name", "rel"), [(n, r) for n, rels in EDITS.items() for r in rels])
def test_one_edited_byte_is_named(
    scenarios: dict[str, tuple[Path, str, str]],
    env: dict[str, str],
    tmp_path: Path,
    name: str,
    rel: str,
) -> None:
    repo, run_id, _ = copy_of(scenarios, name, tmp_path)
    path = repo / RUNS_REL / run_id / rel
    if path.stat().st_size == 0:
        path.write_bytes(b"\n")
    else:
        flip_one_byte(path)
    data = replay_json(repo, env, run_id, 3)
    assert data["ok"] is False
    assert any(w.startswith(rel) for w in whats(data)), whats(data)
    if rel == EDITS[name][0]:  # once per scenario, through the real CLI and its text output
        res = ok(factory(repo, env, "ledger-replay", "--run-id", run_id), 3)
        assert "REPLAY DIVERGED" in res.stdout
        assert any(ln.startswith("DIVERGENCE seq=") and rel in ln for ln in res.stdout.splitlines())


def test_a_removed_artifact_and_an_added_file_are_named(
    scenarios: dict[str, tuple[Path, str, str]], env: dict[str, str], tmp_path: Path
) -> None:
    repo, run_id, _ = copy_of(scenarios, "pass", tmp_path)
    run = repo / RUNS_REL / run_id
    (run / "Z_integrator" / "MERGE_PLAN.md").unlink()
    (run / "A_worker" / "EXTRA.txt").write_text("slipped in\n", encoding="utf-8")
    found = whats(replay_json(repo, env, run_id, 3))
    assert any(w.startswith("Z_integrator/MERGE_PLAN.md") for w in found), found
    assert any(w.startswith("A_worker/EXTRA.txt") for w in found), found


# -- a forger who edits a payload and re-chains the ledger --------------------------------------------
@pytest.mark.parametrize("name", ["pass", "oneshot", "overlap", "check"])
def test_rechained_ledger_is_caught_by_the_reported_head(
    scenarios: dict[str, tuple[Path, str, str]], env: dict[str, str], tmp_path: Path, name: str
) -> None:
    repo, run_id, _ = copy_of(scenarios, name, tmp_path)
    events = ledger_lines(repo)
    started = next(e for e in events if e["event_type"] == "run.started")
    started["payload"]["base_ref"] = "refs/heads/forged"  # a harmless-looking, decision-free edit
    rewrite_ledger(repo, events)
    ok(factory(repo, env, "ledger", "verify"))  # the chain itself now verifies...
    data = replay_json(
        repo, env, run_id, 3, cli=True
    )  # ...but the head printed in the report does not match
    heads = [
        d for d in data["divergences"] if "Z_integrator/FINAL_REPORT.txt ledger head" in d["what"]
    ]
    assert heads, whats(data)
    assert "re-chained" in heads[0]["what"]
    assert (
        heads[0]["seq"]
        == json.loads((repo / RUNS_REL / run_id / "Z_integrator" / "STATUS.json").read_bytes())[
            "ledger_head"
        ]["seq"]
    )


def test_rechained_decision_is_recomputed(
    scenarios: dict[str, tuple[Path, str, str]], env: dict[str, str], tmp_path: Path
) -> None:
    """Flip the overlap verdict in the ledger: decisions.evaluate over the recorded facts disagrees."""
    repo, run_id, _ = copy_of(scenarios, "overlap", tmp_path)
    events = ledger_lines(repo)
    decided = next(e for e in events if e["event_type"] == "validation.decided")
    decided["payload"]["verdicts"]["A"] = "PASS"
    rewrite_ledger(repo, events)
    found = whats(replay_json(repo, env, run_id, 3))
    assert "validation.decided verdicts (recomputed by validation.evaluate)" in found


def test_rechained_facts_diverge_from_validation_json(
    scenarios: dict[str, tuple[Path, str, str]], env: dict[str, str], tmp_path: Path
) -> None:
    """Hide B's touch of src/app.py from the recorded facts: the recomputed judgement changes."""
    repo, run_id, _ = copy_of(scenarios, "overlap", tmp_path)
    events = ledger_lines(repo)
    facts = next(
        e for e in events if e["event_type"] == "bundle.facts" and e["payload"]["worker"] == "B"
    )
    facts["payload"]["facts"]["touched"] = ["tests/test_app.py"]
    facts["payload"]["facts"]["files_changed"] = ["tests/test_app.py"]
    rewrite_ledger(repo, events)
    found = whats(replay_json(repo, env, run_id, 3))
    assert "validation.decided status (recomputed by validation.evaluate)" in found
    assert any(w.startswith("VALIDATION.json") for w in found), found


def test_rechained_check_rc_is_recomputed(
    scenarios: dict[str, tuple[Path, str, str]], env: dict[str, str], tmp_path: Path
) -> None:
    repo, run_id, _ = copy_of(scenarios, "check", tmp_path)
    events = ledger_lines(repo)
    check = next(e for e in events if e["event_type"] == "check.finished")
    check["payload"]["rc"] = 0
    rewrite_ledger(repo, events)
    found = whats(replay_json(repo, env, run_id, 3))
    assert any(w.startswith("integrate stage (recomputed") for w in found), found
    assert any(w.startswith("Z_integrator/STATUS.json checks") for w in found), found


# -- a removed last event -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pass", "oneshot", "overlap", "check"])
def test_removed_last_event_is_caught(
    scenarios: dict[str, tuple[Path, str, str]], env: dict[str, str], tmp_path: Path, name: str
) -> None:
    repo, run_id, _ = copy_of(scenarios, name, tmp_path)
    events = ledger_lines(repo)
    assert events[-1]["event_type"] == "run.finished"
    rewrite_ledger(
        repo, events[:-1], rechain=False, head=False
    )  # cut the tail, leave the head file
    data = replay_json(repo, env, run_id, 3)
    assert data["divergences"][0]["what"] == f"{LEDGER} (the ledger's end)", data["divergences"]
    assert "shorter than" in data["divergences"][0]["found"]


@pytest.mark.parametrize("name", ["pass", "overlap", "check"])
def test_removed_last_event_with_head_file_rewritten_is_caught(
    scenarios: dict[str, tuple[Path, str, str]], env: dict[str, str], tmp_path: Path, name: str
) -> None:
    repo, run_id, _ = copy_of(scenarios, name, tmp_path)
    events = ledger_lines(repo)
    rewrite_ledger(repo, events[:-1])  # the head file now agrees with the shorter ledger
    assert Ledger(repo / LEDGER, Clock(None)).verify().ok
    data = replay_json(repo, env, run_id, 3)
    missing = [d for d in data["divergences"] if d["what"] == "run.finished"]
    assert missing and "ledger ends before the run finished" in missing[0]["found"], whats(data)
    assert missing[0]["seq"] == len(events) - 1  # named at the report.written it should follow


def test_removed_middle_event_breaks_the_chain(
    scenarios: dict[str, tuple[Path, str, str]], env: dict[str, str], tmp_path: Path
) -> None:
    repo, run_id, _ = copy_of(scenarios, "pass", tmp_path)
    events = ledger_lines(repo)
    k = next(i for i, e in enumerate(events) if e["event_type"] == "merge.planned")
    rewrite_ledger(repo, events[:k] + events[k + 1 :], rechain=False, head=False)
    data = replay_json(repo, env, run_id, 3)
    first = data["divergences"][0]
    assert first["what"] == "ledger chain (ledger verify)" and first["seq"] == k + 1
    assert "prev_hash" in first["found"]


# -- usage ---------------------------------------------------------------------------------------------------
def test_unknown_run_is_a_one_line_usage_error(
    scenarios: dict[str, tuple[Path, str, str]], env: dict[str, str]
) -> None:
    repo = scenarios["pass"][0]
    res = ok(factory(repo, env, "ledger-replay", "--run-id", "no-such-run"), 2)
    assert (
        res.stderr.count("\n") == 1
        and "no-such-run" in res.stderr
        and "Traceback" not in res.stderr
    )
    res = ok(factory(repo, env, "ledger-replay", "--run-id", "../escape"), 2)
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_replay_outside_a_repository_is_a_usage_error(tmp_path: Path, env: dict[str, str]) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    res = ok(factory(plain, env, "ledger-replay", "--run-id", "x"), 2)
    assert "not inside a git repository" in res.stderr and "Traceback" not in res.stderr


def test_run_folder_without_events_is_divergent(
    scenarios: dict[str, tuple[Path, str, str]], env: dict[str, str], tmp_path: Path
) -> None:
    repo, _, _ = copy_of(scenarios, "pass", tmp_path)
    (repo / RUNS_REL / "stray-run").mkdir()
    data = replay_json(repo, env, "stray-run", 3)
    assert whats(data) == ["run events"]


# -- the ledger event schema -------------------------------------------------------------------------------
def test_every_ledger_line_matches_the_event_schema(
    scenarios: dict[str, tuple[Path, str, str]],
) -> None:
    """PASS, BLOCKED (overlap, check) and FAIL runs: every line is valid against the schema."""
    import jsonschema

    from tools.codex.factory.infra import schemas

    jsonschema.Draft202012Validator.check_schema(schemas.load("ledger_event"))
    finished = set()
    types = set()
    for name, (repo, _run_id, _status) in scenarios.items():
        for n, event in enumerate(ledger_lines(repo), 1):
            problems = schemas.errors("ledger_event", event)
            assert not problems, f"{name} line {n} ({event['event_type']}): {problems}"
            types.add(event["event_type"])
            if event["event_type"] == "run.finished":
                finished.add(event["payload"]["status"])
    assert finished == {"PASS", "BLOCKED", "FAIL"}
    assert {
        "run.started",
        "stage.started",
        "stage.finished",
        "preflight.check",
        "bundle.created",
        "artifacts.written",
        "bundle.facts",
        "validation.decided",
        "merge.planned",
        "patch.applied",
        "check.finished",
        "report.written",
        "run.finished",
    } <= types


def test_the_event_schema_is_not_vacuous(scenarios: dict[str, tuple[Path, str, str]]) -> None:
    from tools.codex.factory.infra import schemas

    events = ledger_lines(scenarios["pass"][0])
    finished = next(e for e in events if e["event_type"] == "stage.finished")
    bad_status = {**finished, "payload": {**finished["payload"], "status": "MAYBE"}}
    assert schemas.errors("ledger_event", bad_status)
    facts = next(e for e in events if e["event_type"] == "bundle.facts")
    no_touched = {
        **facts,
        "payload": {
            **facts["payload"],
            "facts": {k: v for k, v in facts["payload"]["facts"].items() if k != "touched"},
        },
    }
    assert schemas.errors("ledger_event", no_touched)
    assert schemas.errors("ledger_event", {**finished, "event_type": "stage.invented"})
    assert schemas.errors("ledger_event", {**finished, "extra": 1})
    assert schemas.errors("ledger_event", {**finished, "ts_utc": "2026-11-21 20:15:00"})


def emitted_event_types() -> dict[str, list[str]]:
    """Every literal event type the package passes to Recorder.emit (or its own _append) or
    Ledger.append(_locked)."""
    import re

    package = Path(__file__).resolve().parents[2] / "tools" / "codex" / "factory"
    pattern = re.compile(
        r"\.(?:emit|_append|append|append_locked)\(\s*\"([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+)\""
    )
    found: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for m in pattern.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(m.group(1), []).append(path.name)
    return found


def test_every_emitted_event_type_is_in_the_schema() -> None:
    from tools.codex.factory.infra import schemas

    schema = schemas.load("ledger_event")
    listed = set(schema["properties"]["event_type"]["enum"])
    with_payload = {c["if"]["properties"]["event_type"]["const"] for c in schema["allOf"]}
    emitted = emitted_event_types()
    assert len(emitted) >= 16
    missing = {t: files for t, files in emitted.items() if t not in listed}
    assert not missing, (
        f"event types emitted but not in schemas/ledger_event.schema.json: {missing}"
    )
    assert listed == with_payload  # every listed type describes its payload


def test_run_stopped_at_preflight_is_finished_and_replays(
    scenarios: dict[str, tuple[Path, str, str]], env: dict[str, str]
) -> None:
    """oneshot refused by preflight ends its run (run.finished, for watch) without a report."""
    repo, run_id, _ = scenarios["preflight"]
    events = [e for e in ledger_lines(repo) if e["run_id"] == run_id]
    assert [e["event_type"] for e in events][-2:] == ["stage.finished", "run.finished"]
    assert events[-1]["payload"]["status"] == "BLOCKED"
    state = replay_json(repo, env, run_id, 0, cli=True)["state"]
    assert state["final"]["status"] == "BLOCKED" == state["final"]["recomputed_status"]
    # A second oneshot refused because its run ID is taken leaves that run's events alone.
    after = [e for e in ledger_lines(repo) if e["run_id"] == "run-after"]
    assert [e["event_type"] for e in after].count("run.finished") == 1
    assert replay_json(repo, env, "run-after", 0)["ok"] is True


def test_strict_dependency_block_replays_and_its_flag_is_an_input(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """merge.planned records the strict flag: replay recomputes the order with it."""
    repo = make_repo(tmp_path / "repo", env)
    plan = tmp_path / "plan.json"
    plan.write_bytes(
        jsonio.pretty(
            {
                "schema_version": 1,
                "workers": [
                    {"id": "A", "allow": ["src/**"]},
                    {"id": "B", "allow": ["tests/**"], "depends_on": ["A"]},
                ],
            }
        )
    )
    strict = {**env, "FACTORY_FEATURE_FLAGS__STRICT_HANDOFF_DEPENDENCIES": "true"}
    ok(
        factory(
            repo,
            strict,
            "launch",
            "--base-ref",
            "HEAD",
            "--dry-run",
            "--run-id",
            "run-strict",
            "--plan",
            str(plan),
        )
    )
    ok(factory(repo, strict, "bundle-validate", "--run-id", "run-strict", "--workers", "B"))
    ok(factory(repo, strict, "integrate", "--run-id", "run-strict", "--workers", "B"), 3)
    state = replay_json(repo, env, "run-strict", 0)["state"]
    assert state["merge"]["reason"].startswith("dependencies on workers outside this integration")
    assert state["final"]["status"] == "BLOCKED"
    events = ledger_lines(repo)
    planned = next(e for e in events if e["event_type"] == "merge.planned")
    assert planned["payload"]["strict"] is True
    planned["payload"]["strict"] = False
    rewrite_ledger(repo, events)
    assert "merge.planned order (recomputed by decisions.merge_order)" in whats(
        replay_json(repo, env, "run-strict", 3)
    )
