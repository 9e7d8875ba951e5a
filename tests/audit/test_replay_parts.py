"""The replay's parts on their own: the fold's handler registry against the event schema, a fold
that needs only the events (and the run's manifest), and the one chain verifier the anchors use."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from tests.audit.test_replay import LEDGER, ledger_lines, ok, replay_json, rewrite_ledger, whats
from tests.support.scratch import RUNS_REL, factory, make_repo, scratch_env
from tools.codex.factory.audit.diskcheck import read_docs
from tools.codex.factory.audit.fold import HANDLERS, NO_CHECK, RunDocs, fold, registry_problems
from tools.codex.factory.infra import schemas
from tools.codex.factory.infra.clock import Clock
from tools.codex.factory.ledger.store import Event, Ledger

RUN = "run-parts"


def schema_types() -> set[str]:
    return set(schemas.load("ledger_event")["properties"]["event_type"]["enum"])


# -- the handler registry ------------------------------------------------------------------------
def test_every_event_type_has_a_handler_or_needs_no_check() -> None:
    assert registry_problems(schema_types()) == []
    assert set(HANDLERS) | NO_CHECK == schema_types()


def test_a_handler_for_a_type_not_in_the_schema_fails() -> None:
    assert registry_problems(schema_types(), {*HANDLERS, "stage.invented"}) == [
        "stage.invented: handler for a type not in the schema"
    ]
    # An event renamed in the schema only: its handler would never run again.
    renamed = (schema_types() - {"bundle.facts"}) | {"bundle.fact_set"}
    assert registry_problems(renamed) == [
        "bundle.fact_set: no handler and not in NO_CHECK",
        "bundle.facts: handler for a type not in the schema",
    ]
    assert registry_problems(schema_types(), HANDLERS.keys(), NO_CHECK | {"run.finished"}) == [
        "run.finished: both handled and in NO_CHECK"
    ]
    assert registry_problems(schema_types(), HANDLERS.keys(), NO_CHECK - {"stage.started"}) == [
        "stage.started: no handler and not in NO_CHECK"
    ]


# -- the fold needs only the events ----------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("replay-parts")
    env = scratch_env(root / "home")
    repo = make_repo(root / "repo", env)
    ok(factory(repo, env, "oneshot", "--base-ref", "HEAD", "--dry-run", "--run-id", RUN))
    return repo


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return scratch_env(tmp_path / "home")


def run_events(repo: Path) -> list[Event]:
    return [ev for ev in Ledger(repo / LEDGER, Clock(None)).events() if ev.run_id == RUN]


def test_the_fold_reads_no_file(built: Path, tmp_path: Path) -> None:
    """Folded after the run folder is gone, with what was read of it before: the same state."""
    repo = tmp_path / "repo"
    shutil.copytree(built, repo, symlinks=True)
    run_dir = repo / RUNS_REL / RUN
    docs = read_docs(run_dir, RUN)
    assert docs.manifest is not None and docs.manifest_problem is None and len(docs.sums) == 2
    events = run_events(repo)
    before = fold(RUN, events, docs)
    shutil.rmtree(run_dir)
    after = fold(RUN, events, docs)
    assert before.divergences == after.divergences == []
    assert before.state.as_dict() == after.state.as_dict()
    assert after.state.final is not None and after.state.final["status"] == "PASS"
    assert after.state.final["recomputed_status"] == "PASS"
    assert after.timeline == before.timeline and len(after.timeline) == len(events)


def test_the_fold_recomputes_decisions_from_the_events_alone(built: Path) -> None:
    """A forged verdict, folded in memory without any file of the run: recomputed and caught."""
    events = run_events(built)
    forged = []
    for ev in events:
        if ev.event_type == "validation.decided":
            verdicts = dict.fromkeys(ev.payload["verdicts"], "BLOCKED")
            ev = dataclasses.replace(ev, payload={**ev.payload, "verdicts": verdicts})
        forged.append(ev)
    folded = fold(RUN, forged, RunDocs(manifest=None, manifest_problem="not read"))
    assert [d.what for d in folded.divergences] == [
        "validation.decided verdicts (recomputed by validation.evaluate)",
        "attestations/ledger_excerpt.jsonl (the run's events before report.written, "
        "recomputed from the ledger)",
    ]


def test_a_malformed_event_is_reported_by_the_fold_and_not_folded(built: Path) -> None:
    events = run_events(built)
    started = next(i for i, ev in enumerate(events) if ev.event_type == "run.started")
    events[started] = dataclasses.replace(events[started], payload={"kind": "oneshot"})
    folded = fold(RUN, events, RunDocs(manifest=None, manifest_problem="not read"))
    assert folded.divergences[0].what == (
        "ledger event run.started (schemas/ledger_event.schema.json)"
    )
    assert folded.state.base_commit is None  # not folded


# -- the chain: one verifier --------------------------------------------------------------------------
def test_a_line_below_the_anchored_head_is_named_by_the_chain_verifier(
    built: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """A ts_utc that goes backwards (re-chained) is a bad line to ``Ledger.verify``, and so to the
    replay's check of the run's span and to the anchors: the line is named as at or below the
    head the report printed. (The run index is removed: with it the rewrite is caught earlier,
    at the ledger's end, by the lines it recorded.)"""
    repo = tmp_path / "repo"
    shutil.copytree(built, repo, symlinks=True)
    events = ledger_lines(repo)
    target = [e for e in events if e["event_type"] == "stage.started"][1]  # not the first line
    target["ts_utc"] = "2020-01-01T00:00:00.000000Z"
    rewrite_ledger(repo, events)
    (repo / LEDGER).with_name("factory_ledger.index.sqlite3").unlink()
    verified = Ledger(repo / LEDGER, Clock(None)).verify()
    assert verified.first_bad_line == target["seq"] and "ts_utc" in verified.reason
    found = whats(replay_json(repo, env, RUN, 3))
    assert found[0].startswith("ledger chain (seq 1 to "), found
    assert any(
        w.startswith(f"ledger line seq {target['seq']} (at or below the head seq") for w in found
    ), found


def test_the_end_of_the_ledger_is_not_a_bad_line(built: Path, tmp_path: Path) -> None:
    """A torn tail or a head file ahead of the ledger fails verify without naming a line."""
    repo = tmp_path / "repo"
    shutil.copytree(built, repo, symlinks=True)
    path = repo / LEDGER
    data = path.read_bytes()
    path.write_bytes(data + b'{"torn')
    torn = Ledger(path, Clock(None)).verify()
    assert not torn.ok and torn.torn_tail and torn.first_bad_line is None
    path.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1])  # the last line cut off
    cut = Ledger(path, Clock(None)).verify()
    assert not cut.ok and cut.head_file == "ahead" and cut.first_bad_line is None
    path.write_bytes(data)
    assert Ledger(path, Clock(None)).verify().first_bad_line is None
