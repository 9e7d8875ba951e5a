"""The pure fold of one run's ledger events into its state, recomputing every decision.

Events are folded in chain order. Each one is checked against
``schemas/ledger_event.schema.json`` first (a malformed event is a divergence and is not
folded), then handed to the handler registered for its type in :data:`HANDLERS`. Handlers
recompute what the live run decided with the same pure functions it used
(:mod:`core.validation`, :mod:`core.decisions`) from the inputs the events record: the
validation judgement from ``bundle.facts`` and the policy in ``validation.decided``, the merge
order from ``merge.planned``'s ``depends_on``, the check status from ``check.finished``, the
integrate stage from those, and the final status from the stage rows of ``run.finished``.

The registry is explicit so that renaming an event type cannot silently disable its check: a
test holds it against the schema's list of types (:func:`registry_problems`), where every type
has a handler or is in :data:`NO_CHECK`.

Nothing here reads a file: what the fold needs from the run folder (RUN_MANIFEST.json read and
schema-checked, or why it is unusable; the attestation sum files) comes in as :class:`RunDocs`,
so every divergence found here follows from the events and those inputs alone. What the events
say about files (recorded hashes, ledger heads) is collected for the disk and anchor checks.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypedDict, cast

from tools.codex.factory.audit.describe import describe, short
from tools.codex.factory.core import decisions, isolation, testfailures, validation
from tools.codex.factory.core.isolation import Result as IsolationResult
from tools.codex.factory.core.paths import (
    ATTEST_DIR,
    MANIFEST,
    REPORT_HTML,
    VALIDATION,
    Z_DIR,
    worker_dirname,
)
from tools.codex.factory.errors import FactoryError
from tools.codex.factory.infra import jsonio, schemas
from tools.codex.factory.ledger.store import Event
from tools.codex.factory.records.validation import (
    AgentAttempt,
    AppliedPatch,
    BundleFacts,
    CheckResult,
    Finding,
    Overlap,
    Policy,
    ReviewFinding,
    StageRow,
    Verdict,
    Violation,
)
from tools.codex.factory.run.handle import isolation_settings, run_setting
from tools.codex.factory.run.validate import policy, reviewable

if sys.version_info >= (3, 11):
    from typing import NotRequired
else:  # pragma: no cover - Python 3.10
    from typing_extensions import NotRequired

EXCERPT_REL = f"{ATTEST_DIR}/ledger_excerpt.jsonl"
# The attestation files that list every bundle and Z file: intact, they vouch for each file.
SUM_FILES = (f"{ATTEST_DIR}/bundles.sha256", f"{ATTEST_DIR}/report.sha256")


DIFF_REL = f"{Z_DIR}/DIFF.patch"  # what a landing commits


# -- what the fold finds and keeps -----------------------------------------------------------------
@dataclass(frozen=True)
class Divergence:
    """One mismatch between what was recorded and what replay recomputed or found."""

    seq: int | None
    what: str
    expected: str
    found: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "what": self.what, "expected": self.expected, "found": self.found}


def divergence(seq: int | None, what: str, expected: object, found: object) -> Divergence:
    """A divergence with both sides as one short line each (values may be any JSON)."""
    return Divergence(seq, what, short(expected, 400), short(found, 400))


class SumFile(NamedTuple):
    """An attestation sum file as it is on disk: its sha256 and the files it lists."""

    sha256: str
    listed: dict[str, str]  # path under the run folder -> sha256


@dataclass(frozen=True)
class RunDocs:
    """What the fold needs from the run folder, read (and schema-checked) by the caller."""

    manifest: dict[str, Any] | None  # RUN_MANIFEST.json, valid and of this run; None if unusable
    manifest_problem: str | None  # why it is unusable
    sums: Mapping[str, SumFile] = field(default_factory=dict)  # of SUM_FILES, those readable
    # Z's check logs: path under the run folder -> (sha256 of the whole file, the bytes a
    # summary reads: a log's last testfailures.TAIL_BYTES, a JUnit XML whole).
    logs: Mapping[str, tuple[str, bytes]] = field(default_factory=dict)


class AnchoredHead(NamedTuple):
    """A ledger head recorded somewhere: it must be the hash of the ledger line at ``seq``."""

    seq: int
    hash: str
    source: str
    at: int | None  # the seq of the event that records it, if an event does


@dataclass
class FileRecord:
    """A recorded sha256 for one file under the run folder."""

    sha: str
    seq: int
    source: str


@dataclass
class Snapshot:
    """What the ledger last said about one worker folder: per-file hashes or a bundle hash."""

    seq: int
    source: str
    files: dict[str, str] | None = None
    bundle_hash: str | None = None
    complete: bool = False
    before: dict[str, str] | None = None  # the per-file record a bundle hash superseded


class MergeState(TypedDict):
    seq: int
    order: list[str]
    depends_on: dict[str, list[str]]
    reason: str


class CheckSpec(TypedDict):
    """What a ``check.finished`` says about the check that ran (vs the run's configured ones)."""

    name: str
    argv: list[str]
    required: bool
    seq: int
    output_tail: bool  # recorded in the ledger
    failed: bool  # rc != 0 or timed out: its output tail is recorded whatever the flag says
    said: dict[str, Any]  # failing_tests and output_tail as recorded (STATUS.json repeats them)


@dataclass
class Segment:
    """Events since the previous ``run.finished``: the inputs of the next final status."""

    stages: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # status, reason, seq
    merge: MergeState | None = None
    patches: list[AppliedPatch] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    check_specs: list[CheckSpec] = field(default_factory=list)
    violations: list[tuple[int, Violation]] = field(default_factory=list)  # (seq, violation)
    conflict: str = ""
    report: Event | None = None
    refused: list[str] = field(default_factory=list)  # integrate.refused reasons
    probes: list[tuple[int, isolation.Probe]] = field(default_factory=list)  # (seq, probe)
    probe_tests: list[dict[str, list[str]]] = field(default_factory=list)  # check -> names
    isolation: Event | None = None  # isolation.decided
    found: IsolationResult | None = None  # isolation as recomputed (STATUS.json repeats it)


class StageState(TypedDict):
    status: str
    reason: str
    seq: int


class PreflightState(TypedDict):
    name: str
    ok: bool
    detail: str


class ValidationState(TypedDict):
    """The recomputed judgement and what it judged: the expected content of VALIDATION.json."""

    seq: int
    workers: list[str]
    policy: Policy
    bundle_hashes: dict[str, str]
    status: Verdict
    verdicts: dict[str, Verdict]
    findings: list[Finding]
    warnings: list[Finding]
    overlaps: list[Overlap]
    touched: dict[str, list[str]]
    # Judged by this release (facts of version 2): what integration applies, per worker.
    apply_sha256: NotRequired[dict[str, str | None]]
    depends_on: NotRequired[dict[str, list[str]]]
    eol_normalised: NotRequired[dict[str, bool]]
    files_sha256: NotRequired[dict[str, dict[str, str]]]


class FinalState(TypedDict):
    seq: int
    status: str
    recomputed_status: str
    reasons: list[str]
    stages: list[StageRow]


class Refusal(TypedDict):
    seq: int
    reason: str


class LedgerHead(TypedDict):
    seq: int
    hash: str


@dataclass
class RunState:
    """The run as its events tell it (the ``state`` of the replay's output, without the disk's
    counters and the anchor, which later checks add)."""

    run_id: str
    kind: str | None = None
    base_ref: str | None = None
    base_commit: str | None = None
    dry_run: bool | None = None
    workers: list[str] = field(default_factory=list)
    plan_hash: str | None = None
    events: int = 0
    stages: dict[str, StageState] = field(default_factory=dict)
    preflight: list[PreflightState] = field(default_factory=list)
    validation: ValidationState | None = None
    merge: MergeState | None = None
    patches: list[AppliedPatch] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    check_status: str | None = None
    final: FinalState | None = None
    ledger_head: LedgerHead | None = None
    refusals: list[Refusal] = field(default_factory=list)
    policy_violations: list[Violation] = field(default_factory=list)
    finished: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "base_ref": self.base_ref,
            "base_commit": self.base_commit,
            "dry_run": self.dry_run,
            "workers": self.workers,
            "plan_hash": self.plan_hash,
            "events": self.events,
            "stages": self.stages,
            "preflight": self.preflight,
            "validation": self.validation,
            "merge": self.merge,
            "patches": self.patches,
            "checks": self.checks,
            "check_status": self.check_status,
            "final": self.final,
            "ledger_head": self.ledger_head,
            "refusals": self.refusals,
            "policy_violations": self.policy_violations,
            "finished": self.finished,
        }


def worker_dir_of(rel: str) -> str | None:
    """The worker folder a run-relative path lies in, if it lies in one."""
    first = rel.split("/", 1)[0]
    return first if first.endswith("_worker") and "/" in rel else None


def _sha_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the fold ---------------------------------------------------------------------------------------
class Fold:
    """One run's events folded in order: its state, what it says about files, the divergences."""

    def __init__(self, run_id: str, docs: RunDocs) -> None:
        self.docs = docs
        self.state = RunState(run_id)
        self.divergences: list[Divergence] = []
        self.timeline: list[str] = []
        self.events: list[Event] = []
        self.files: dict[str, FileRecord] = {}  # files outside the worker folders
        self.snaps: dict[str, Snapshot] = {}  # by worker folder
        self.facts: dict[str, tuple[BundleFacts, int]] = {}  # the last bundle.facts per worker
        self.fact_events: list[tuple[str, BundleFacts, int]] = []  # every bundle.facts, in order
        # Gate 0: the last review.findings per worker since its bundle.facts, and every one.
        self.reviews: dict[str, tuple[list[ReviewFinding], int]] = {}
        self.review_events: list[tuple[str, dict[str, Any], int]] = []
        # The policy version each review.findings is judged by: the validation.decided's after it.
        self.review_versions: dict[int, object] = {}
        # Gate 0's reviewer agent: each worker's attempts since its bundle.facts, and every one.
        self.agent_answers: dict[str, list[AgentAttempt]] = {}
        self.agent_events: list[tuple[str, AgentAttempt, int]] = []
        self.heads: list[AnchoredHead] = []  # recorded by report.written
        self.z_listing: tuple[set[str], int] | None = None  # Z files per the last report.sha256
        self.manifest_pin: FileRecord | None = None  # the first record of RUN_MANIFEST.json
        self.seg = Segment()
        self.last_seg = Segment()

    def diverge(self, seq: int | None, what: str, expected: object, found: object) -> None:
        self.divergences.append(divergence(seq, what, expected, found))

    def run(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.events.append(ev)
            self.timeline.append(describe(ev))
            problems = schemas.errors("ledger_event", ev.as_dict())
            if problems:  # a malformed event is reported, never folded
                where, msg = problems[0]
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                self.diverge(
                    ev.seq,
                    f"ledger event {short(ev.event_type, 40)} (schemas/ledger_event.schema.json)",
                    "an event that matches the schema",
                    f"{where}: {msg}{more}",
                )
                continue
            handler = HANDLERS.get(ev.event_type)
            if handler is None:
                continue  # a type in NO_CHECK (the schema admits no other)
            try:
                handler(self, ev)
            except (
                KeyError,
                TypeError,
                ValueError,
                AttributeError,
                IndexError,
                FactoryError,
            ) as exc:
                self.diverge(
                    ev.seq,
                    f"{ev.event_type} payload",
                    "the recorded inputs of this event",
                    f"unreadable payload ({type(exc).__name__}: {exc})",
                )
        self.state.events = len(self.events)
        if self.seg.report is not None:
            r = self.seg.report
            self.diverge(
                r.seq,
                "run.finished",
                f"a run.finished event after report.written (seq {r.seq})",
                "none: the ledger ends before the run finished (last event removed?)",
            )

    # -- recorded files ------------------------------------------------------------------------
    def _record_file(self, rel: str, sha: str, seq: int, source: str) -> None:
        wdir = worker_dir_of(rel)
        if wdir is None:
            self.files[rel] = FileRecord(sha, seq, source)
        else:
            snap = self.snaps.get(wdir)
            if snap is None or snap.seq != seq or snap.files is None:
                snap = Snapshot(seq, source, files={})
                self.snaps[wdir] = snap
            assert snap.files is not None
            snap.files[rel] = sha

    def _record_many(self, files: dict[str, str], seq: int, source: str) -> None:
        for rel, sha in sorted(files.items()):
            self._record_file(rel, sha, seq, source)

    # -- the run's own settings (its manifest) ---------------------------------------------------
    def _run_setting(self, ev: Event, dotted: str) -> tuple[bool, Any]:
        """(True, value) of a setting in the run's RUN_MANIFEST.json config; (False, None) if the
        manifest is unusable (reported by the manifest check) or lacks it (reported here)."""
        manifest = self.docs.manifest
        if manifest is None:
            return False, None
        try:
            return True, run_setting(manifest, dotted)
        except (KeyError, TypeError):
            self.diverge(
                ev.seq,
                f"{MANIFEST} config.{dotted}",
                "the setting the run was launched with",
                "missing",
            )
            return False, None

    def _check_policy(self, ev: Event) -> None:
        """The policy validation judged by is the one the run was launched with (its manifest)."""
        manifest = self.docs.manifest
        if manifest is None:
            return
        recorded = ev.payload["policy"]
        version = recorded.get("version", 1)
        try:
            expected = policy(manifest, version if isinstance(version, int) else 1)
        except (KeyError, TypeError) as exc:
            self.diverge(
                ev.seq, f"{MANIFEST} config", "the settings validation judges by", f"missing {exc}"
            )
            return
        for key in sorted(set(expected) | set(recorded)):
            if expected.get(key) != recorded.get(key):
                self.diverge(
                    ev.seq,
                    f"validation.decided policy {key} (derived from {MANIFEST}: config and plan)",
                    expected.get(key, "(absent)"),
                    recorded.get(key, "(absent)"),
                )

    # -- handlers (registered in HANDLERS below) --------------------------------------------------
    def on_run_started(self, ev: Event) -> None:
        p = ev.payload
        s = self.state
        s.kind = p.get("kind")
        s.base_ref = p["base_ref"]
        s.base_commit = p["base_commit"]
        s.dry_run = p["dry_run"]
        s.workers = list(p["workers"])
        s.plan_hash = p["plan_hash"]

    def on_stage_finished(self, ev: Event) -> None:
        status, reason = ev.payload["status"], ev.payload.get("reason", "")
        self.seg.stages[ev.stage] = (status, reason, ev.seq)
        self.state.stages[ev.stage] = {"status": status, "reason": reason, "seq": ev.seq}

    def on_preflight_check(self, ev: Event) -> None:
        p = ev.payload
        self.state.preflight.append({"name": p["name"], "ok": p["ok"], "detail": p["detail"]})

    def on_bundle_created(self, ev: Event) -> None:
        wdir = worker_dirname(ev.payload["worker"])
        self.snaps[wdir] = Snapshot(ev.seq, "bundle.created", files={})
        self._record_many(ev.payload["files"], ev.seq, "bundle.created")

    def on_artifacts_written(self, ev: Event) -> None:
        files = ev.payload["files"]
        for wdir in {worker_dir_of(r) for r in files} - {None}:
            assert wdir is not None
            self.snaps[wdir] = Snapshot(ev.seq, "artifacts.written", files={})
        pinned = self.manifest_pin
        if MANIFEST in files and pinned is not None:
            if files[MANIFEST] != pinned.sha:
                self.diverge(
                    ev.seq,
                    f"artifacts.written {MANIFEST} (the manifest is pinned by {pinned.source} "
                    f"at seq {pinned.seq})",
                    f"sha256 {pinned.sha}",
                    f"sha256 {files[MANIFEST]}",
                )
            files = {k: v for k, v in files.items() if k != MANIFEST}  # the pin stays
        self._record_many(files, ev.seq, "artifacts.written")
        if MANIFEST in ev.payload["files"] and self.manifest_pin is None:
            self.manifest_pin = self.files[MANIFEST]

    def on_bundle_collected(self, ev: Event) -> None:
        """A bundle collected from a real worker's worktree, or imported from a patch file or
        commits: its artifacts are the whole bundle."""
        artifacts = ev.payload.get("artifacts")
        if isinstance(artifacts, dict):
            self.snaps[worker_dirname(ev.payload["worker"])] = Snapshot(
                ev.seq, "bundle.collected", files={}
            )
            self._record_many(artifacts, ev.seq, "bundle.collected")

    def on_worker_prepared(self, ev: Event) -> None:
        files = ev.payload.get("files")
        if isinstance(files, dict):
            self._record_many(files, ev.seq, "worker.prepared")

    def on_manifest_written(self, ev: Event) -> None:
        """Launch pins the run's manifest with its one ``manifest.written``: a later one (or
        one after an ``artifacts.written`` that listed another hash) is a rewrite, not a pin."""
        pinned = self.manifest_pin
        if pinned is not None:
            self.diverge(
                ev.seq,
                f"manifest.written (a second pin of {MANIFEST}: launch writes one; every stage "
                "refuses the run)",
                f"only the pin at seq {pinned.seq} ({pinned.source}, sha256 {pinned.sha})",
                f"another at seq {ev.seq} (sha256 {ev.payload['sha256']})",
            )
            return
        self._record_file(MANIFEST, ev.payload["sha256"], ev.seq, "manifest.written")
        self.manifest_pin = self.files[MANIFEST]

    def on_bundle_facts(self, ev: Event) -> None:
        w = ev.payload["worker"]
        facts = ev.payload["facts"]
        if facts["worker"] != w:
            self.diverge(ev.seq, "bundle.facts worker", w, facts["worker"])
        self.facts[w] = (facts, ev.seq)
        self.fact_events.append((w, facts, ev.seq))
        self.reviews.pop(w, None)
        self.agent_answers.pop(w, None)
        prev = self.snaps.get(worker_dirname(w))
        before = (
            prev.files
            if prev is not None and prev.files is not None
            else (prev.before if prev else None)
        )
        self.snaps[worker_dirname(w)] = Snapshot(
            ev.seq, "bundle.facts", bundle_hash=facts["bundle_hash"], before=before
        )

    def _judged_patch(self, ev: Event, worker: str, sha: str) -> None:
        """A review of one worker's patch must be about the snapshot its bundle.facts judged."""
        facts = self.facts.get(worker)
        judged = facts[0].get("apply_sha256") if facts is not None else None
        if judged != sha:
            self.diverge(
                ev.seq,
                f"{ev.event_type} patch_sha256 for worker {worker} (the patch its bundle.facts "
                "judged)",
                judged,
                sha,
            )

    def on_review_findings(self, ev: Event) -> None:
        """Gate 0's findings on one worker's patch: they must be about the snapshot its
        bundle.facts judged; replay's disk check recomputes them from those bytes."""
        p = ev.payload
        w = p["worker"]
        self._judged_patch(ev, w, str(p["patch_sha256"]))
        self.reviews[w] = (list(p["findings"]), ev.seq)
        self.review_events.append((w, dict(p), ev.seq))

    def on_review_agent(self, ev: Event) -> None:
        """One attempt of the reviewer agent on one worker's patch: about the snapshot its
        bundle.facts judged; replay's disk check re-judges its recorded answer."""
        p = cast(AgentAttempt, ev.payload)
        w = p["worker"]
        self._judged_patch(ev, w, p["patch_sha256"])
        earlier = self.agent_answers.setdefault(w, [])
        if p["attempt"] != len(earlier) + 1:
            self.diverge(
                ev.seq,
                f"review.agent attempt for worker {w} (numbered from 1 since its bundle.facts)",
                len(earlier) + 1,
                p["attempt"],
            )
        earlier.append(p)
        self.agent_events.append((w, p, ev.seq))

    def _agent_answers(
        self, ev: Event, facts: Mapping[str, BundleFacts]
    ) -> dict[str, list[AgentAttempt]]:
        """The reviewer agent's attempts validation judged, when the policy names an agent
        (a reviewable worker without one is a divergence)."""
        pol = ev.payload["policy"]
        settings = pol.get("review") or {}
        if int(pol.get("version", 1)) < 8 or pol.get("review_agent") is None:
            return {}
        if settings.get("enabled"):
            for w in sorted(facts):
                if reviewable(facts[w]) and w not in self.agent_answers:
                    self.diverge(
                        ev.seq,
                        f"review.agent for worker {w} (the reviewer agent is configured)",
                        "a review.agent event after its bundle.facts",
                        "none",
                    )
        return {w: self.agent_answers[w] for w in facts if w in self.agent_answers}

    def _reviews(
        self, ev: Event, facts: Mapping[str, BundleFacts]
    ) -> dict[str, list[ReviewFinding]]:
        """The Gate 0 findings validation judged: every reviewable worker's, when the policy
        enables the review (a missing review.findings is a divergence)."""
        settings = ev.payload["policy"].get("review")
        if int(ev.payload["policy"].get("version", 1)) < 7 or not settings:
            return {}
        if settings.get("enabled"):
            for w in sorted(facts):
                if reviewable(facts[w]) and w not in self.reviews:
                    self.diverge(
                        ev.seq,
                        f"review.findings for worker {w} (Gate 0 is enabled)",
                        "a review.findings event after its bundle.facts",
                        "none",
                    )
        return {w: self.reviews[w][0] for w in facts if w in self.reviews}

    def _review_policy(self, ev: Event) -> None:
        """Each review.findings not yet judged is judged by this decision's policy version:
        one that records another (a forger's, to be recomputed by fewer rules) diverges."""
        version = ev.payload["policy"].get("version", 1)
        for w, p, seq in self.review_events:
            if seq in self.review_versions:
                continue
            self.review_versions[seq] = version
            if "policy_version" in p and p["policy_version"] != version:
                self.diverge(
                    seq,
                    f"review.findings policy_version for worker {w} (the policy version of "
                    f"the validation.decided at seq {ev.seq})",
                    version,
                    p["policy_version"],
                )

    def on_validation_decided(self, ev: Event) -> None:
        p = ev.payload
        workers = list(p["workers"])
        facts: dict[str, BundleFacts] = {}
        for w in workers:
            if w not in self.facts:
                self.diverge(
                    ev.seq,
                    f"validation.decided input for worker {w}",
                    "a bundle.facts event before it",
                    "none",
                )
                return
            facts[w] = self.facts[w][0]
        result = validation.evaluate(
            facts,
            p["policy"],
            list(p.get("gitdir_changed", [])),
            p.get("git_attr_source", True) is not False,
            self._reviews(ev, facts),
            self._agent_answers(ev, facts),
        )
        recomputed: Mapping[str, object] = result
        for key in ("status", "verdicts", "overlaps"):
            if recomputed[key] != p[key]:
                self.diverge(
                    ev.seq,
                    f"validation.decided {key} (recomputed by validation.evaluate)",
                    recomputed[key],
                    p[key],
                )
        if len(result["findings"]) != p["findings"]:
            self.diverge(
                ev.seq,
                "validation.decided findings count (recomputed)",
                len(result["findings"]),
                p["findings"],
            )
        self._check_policy(ev)
        self._review_policy(ev)
        state: ValidationState = {
            "seq": ev.seq,
            "workers": workers,
            "policy": p["policy"],
            "bundle_hashes": {w: facts[w]["bundle_hash"] for w in workers},
            "status": result["status"],
            "verdicts": result["verdicts"],
            "findings": result["findings"],
            "warnings": result["warnings"],
            "overlaps": result["overlaps"],
            "touched": result["touched"],
        }
        if all("version" in facts[w] for w in workers):
            # What integration applies: the judged bytes and declarations, per worker.
            state["apply_sha256"] = {w: facts[w]["apply_sha256"] for w in workers}
            state["depends_on"] = {w: list(facts[w]["depends_on"]) for w in workers}
            state["eol_normalised"] = {w: bool(facts[w]["eol_normalised"]) for w in workers}
            state["files_sha256"] = {w: dict(facts[w]["files_sha256"]) for w in workers}
        self.state.validation = state
        self._record_file(VALIDATION, p["validation_sha256"], ev.seq, "validation.decided")

    def on_merge_planned(self, ev: Event) -> None:
        p = ev.payload
        known, strict = self._run_setting(ev, "feature_flags.strict_handoff_dependencies")
        if known and bool(strict) != bool(p.get("strict", False)):
            self.diverge(
                ev.seq,
                f"merge.planned strict (feature_flags.strict_handoff_dependencies in {MANIFEST})",
                bool(strict),
                bool(p.get("strict", False)),
            )
        deps = {w: list(d) for w, d in p["depends_on"].items()}
        order, reason = decisions.merge_order(deps, bool(p.get("strict", False)))
        if order != p["order"]:
            self.diverge(
                ev.seq,
                "merge.planned order (recomputed by decisions.merge_order)",
                order,
                p["order"],
            )
        if reason != p["reason"]:
            self.diverge(ev.seq, "merge.planned reason (recomputed)", reason, p["reason"])
        v = self.state.validation
        if v is None or v["status"] != "PASS":
            self.diverge(
                ev.seq,
                "merge.planned precondition",
                "a PASS validation.decided before integration",
                v["status"] if v else "no validation",
            )
        elif sorted(v["workers"]) != sorted(deps):
            self.diverge(ev.seq, "merge.planned workers", sorted(v["workers"]), sorted(deps))
        manifest = self.docs.manifest
        if manifest is not None:
            plan_deps = {
                w["id"]: list(w.get("depends_on", []))
                for w in manifest.get("plan", {}).get("workers", [])
            }
            for w in sorted(deps):
                known_facts = self.facts.get(w)
                handoff = known_facts[0].get("depends_on", []) if known_facts else []
                expected = sorted(set(plan_deps.get(w, [])) | set(handoff))
                if sorted(deps[w]) != expected:
                    self.diverge(
                        ev.seq,
                        f"merge.planned depends_on[{w}] (plan + HANDOFF_NOTE)",
                        expected,
                        deps[w],
                    )
        self.seg.merge = {
            "seq": ev.seq,
            "order": list(p["order"]),
            "depends_on": deps,
            "reason": p["reason"],
        }
        self.seg.patches = []
        self.seg.conflict = ""
        self.seg.checks = []
        self.seg.probes = []
        self.seg.probe_tests = []
        self.seg.isolation = None
        self.seg.check_specs = []
        self.state.merge = self.seg.merge

    def on_patch_applied(self, ev: Event) -> None:
        p = ev.payload
        i = len(self.seg.patches)
        order = self.seg.merge["order"] if self.seg.merge else []
        if i >= len(order) or order[i] != p["worker"]:
            self.diverge(
                ev.seq,
                "patch.applied order",
                f"worker {order[i] if i < len(order) else '(none)'} per merge.planned",
                f"worker {p['worker']}",
            )
        self.seg.patches.append(
            {"worker": p["worker"], "ok": bool(p["ok"]), "files": list(p["files"])}
        )
        self.state.patches = self.seg.patches

    def on_check_finished(self, ev: Event) -> None:
        p = ev.payload
        legacy = isinstance(p.get("output_tail", {}).get("stdout"), str)  # earlier releases
        result: CheckResult = {
            "name": p["name"],
            "required": bool(p["required"]),
            "rc": p["rc"],
            "timed_out": bool(p["timed_out"]),
        }
        spec: CheckSpec = {
            "name": p["name"],
            "argv": list(p["argv"]),
            "required": bool(p["required"]),
            "seq": ev.seq,
            "output_tail": "output_tail" in p,
            "failed": bool(p["timed_out"]) or p["rc"] != 0,
            "said": {
                k: p[k]
                for k in ("failing_tests", "output_tail")
                if k in p and not (k == "output_tail" and legacy)
            },
        }
        self.seg.checks.append(result)  # both or neither: STATUS.json's check pairs them
        self.seg.check_specs.append(spec)
        self.state.checks = self.seg.checks
        self._record_many(p.get("logs", {}), ev.seq, "check.finished")
        self._check_output(ev)

    def _check_output(self, ev: Event) -> None:
        """A check's recorded failing tests and output tail, recomputed by
        :func:`testfailures.summarize` from its logs when they still hash to what was recorded
        (a changed log is reported by the artifact check); a tail in the earlier string form is
        not recomputed."""
        p = ev.payload
        wanted = self.seg.check_specs[-1]["said"]
        if not wanted:
            return
        logs: dict[str, str] = p.get("logs", {})
        found: dict[str, bytes] = {}
        for rel, sha in logs.items():
            held = self.docs.logs.get(rel)
            if held is None or held[0] != sha:
                return  # the evidence is gone or changed: nothing to recompute from
            found[rel] = held[1]
        streams = {
            kind: next((b for r, b in found.items() if r.endswith(f".{kind}.log")), None)
            for kind in ("stdout", "stderr")
        }
        out, err = streams["stdout"], streams["stderr"]
        if out is None or err is None:
            return
        junit = next((b for r, b in found.items() if r.endswith(".junit.xml")), None)
        said: dict[str, Any] = dict(testfailures.summarize(out, err, junit))
        for key, recorded in sorted(wanted.items()):
            if said[key] != recorded:
                self.diverge(
                    ev.seq,
                    f"check.finished {key} of {p['name']} (recomputed from its logs by "
                    "testfailures.summarize)",
                    said[key],
                    recorded,
                )

    def on_isolation_probe(self, ev: Event) -> None:
        p = ev.payload
        if p["index"] != len(self.seg.probes) + 1:
            self.diverge(ev.seq, "isolation.probe index", len(self.seg.probes) + 1, p["index"])
        passed = {str(c["name"]): c["rc"] == 0 and not c["timed_out"] for c in p["checks"]}
        for c in p["checks"]:
            if bool(c["passed"]) != passed[str(c["name"])]:
                self.diverge(
                    ev.seq,
                    f"isolation.probe check {c['name']!r} passed (rc 0, not timed out)",
                    passed[str(c["name"])],
                    c["passed"],
                )
        probe: isolation.Probe = {
            "step": p["step"],
            "workers": list(p["workers"]),
            "passed": passed,
        }
        self.seg.probes.append((ev.seq, probe))
        self.seg.probe_tests.append(
            {str(c["name"]): list(c.get("failing_tests", [])) for c in p["checks"]}
        )
        self._record_many(p.get("logs", {}), ev.seq, "isolation.probe")
        self._probe_output(ev)

    def _probe_output(self, ev: Event) -> None:
        """A failed probe check's recorded failing tests, recomputed from its two logs (and
        the JUnit XML it wrote, when one was recorded) while they still hash to what was
        recorded (as for ``check.finished``; a changed log is the artifact check's to name)."""
        p = ev.payload
        logs: dict[str, str] = p.get("logs", {})
        for c in p["checks"]:
            if c["passed"] or "failing_tests" not in c:
                continue
            stem = f"probe-{int(p['index']):03d}-{c['name']}"
            rels = [
                next((r for r in sorted(logs) if r.endswith(f"/{stem}.{kind}.log")), "")
                for kind in ("stdout", "stderr")
            ]
            if "" in rels:  # live, names are only ever read from the two logs recorded
                self.diverge(
                    ev.seq,
                    f"isolation.probe failing_tests of {c['name']} (recomputed from its logs "
                    "by testfailures.failing_tests)",
                    f"its {stem}.stdout.log and .stderr.log recorded to read them from",
                    c["failing_tests"],
                )
                continue
            junit = next((r for r in sorted(logs) if r.endswith(f"/{stem}.junit.xml")), "")
            if junit:
                rels.append(junit)
            held = [self.docs.logs.get(r) for r in rels]
            if any(h is None or h[0] != logs[r] for h, r in zip(held, rels, strict=True)):
                continue
            out, err, *xml = (h[1] for h in held if h is not None)
            again = testfailures.failing_tests(out, err, xml[0] if xml else None)
            if again != c["failing_tests"]:
                self.diverge(
                    ev.seq,
                    f"isolation.probe failing_tests of {c['name']} (recomputed from its logs "
                    "by testfailures.failing_tests)",
                    again,
                    c["failing_tests"],
                )

    def on_isolation_decided(self, ev: Event) -> None:
        self.seg.isolation = ev

    def on_integrate_refused(self, ev: Event) -> None:
        self.state.refusals.append({"seq": ev.seq, "reason": ev.payload.get("reason", "")})
        self.seg.refused.append(str(ev.payload.get("reason", "")))

    def on_policy_violation(self, ev: Event) -> None:
        self.seg.violations.append(
            (ev.seq, {"path": str(ev.payload["path"]), "reason": str(ev.payload["reason"])})
        )

    def on_patch_conflict(self, ev: Event) -> None:
        self.seg.conflict = str(ev.payload["error"])

    def on_report_written(self, ev: Event) -> None:
        p = ev.payload
        if self.seg.report is not None:
            self.diverge(
                ev.seq,
                "report.written",
                "one report per run.finished",
                f"a second report after seq {self.seg.report.seq}",
            )
        self.seg.report = ev
        head = p["ledger_head"]
        self.heads.append(
            AnchoredHead(
                int(head["seq"]),
                str(head["hash"]),
                f"report.written (seq {ev.seq}) ledger_head",
                ev.seq,
            )
        )
        if int(head["seq"]) >= ev.seq:
            self.diverge(
                ev.seq, "report.written ledger_head", f"a seq before {ev.seq}", head["seq"]
            )
        self._record_many(p["files"], ev.seq, "report.written")
        self._record_many(p.get("attestations", {}), ev.seq, "report.written")
        self._check_excerpt(ev)
        # The attestation files list every bundle and Z file: trust them if they are intact.
        for rel in SUM_FILES:
            recorded = p.get("attestations", {}).get(rel) or p["files"].get(rel)
            on_disk = self.docs.sums.get(rel)
            if recorded is None or on_disk is None or on_disk.sha256 != recorded:
                continue  # the artifact check reports it
            source = f"{rel} (vouched for by report.written)"
            for wdir in {worker_dir_of(r) for r in on_disk.listed} - {None}:
                assert wdir is not None
                self.snaps[wdir] = Snapshot(ev.seq, source, files={}, complete=True)
            for rel2, sha in sorted(on_disk.listed.items()):
                self._record_file(rel2, sha, ev.seq, source)
            if rel == SUM_FILES[1]:
                self.z_listing = (set(on_disk.listed), ev.seq)

    def on_report_html_written(self, ev: Event) -> None:
        """REPORT.html, written after the run's report: the last record is what the file must
        hash to (the disk check compares it)."""
        self._record_file(REPORT_HTML, str(ev.payload["sha256"]), ev.seq, "report.html.written")

    def _check_excerpt(self, ev: Event) -> None:
        recorded = ev.payload.get("attestations", {}).get(EXCERPT_REL) or ev.payload["files"].get(
            EXCERPT_REL
        )
        if recorded is None:
            return
        before = sorted((e for e in self.events if e.seq < ev.seq), key=Event.sort_key)
        excerpt = b"".join(jsonio.canonical(e.as_dict()) + b"\n" for e in before)
        if _sha_bytes(excerpt) != recorded:
            self.diverge(
                ev.seq,
                f"{EXCERPT_REL} (the run's events before report.written, recomputed from the ledger)",
                f"sha256 {recorded}",
                f"sha256 {_sha_bytes(excerpt)} (the ledger's events changed since)",
            )

    def on_run_finished(self, ev: Event) -> None:
        p = ev.payload
        seg = self.seg
        rows = list(p["stages"])
        report = seg.report
        reached = any(r["stage"] == "integrate" and r["status"] != "SKIPPED" for r in rows)
        violations: list[Violation]
        if report is None:
            # Only a run stopped before integration (preflight or launch refused) or refused at
            # integration's door (integrate.refused: its manifest not the one launch wrote) ends
            # without a report.
            at_door = [r["reason"] for r in rows if r["stage"] == "integrate"] == seg.refused[-1:]
            if (reached and not at_door) or not rows:
                self.diverge(ev.seq, "run.finished", "a report.written event before it", "none")
            violations = []
        else:
            violations = list(report.payload.get("policy_violations", []))
            if report.payload["status"] != p["status"]:
                self.diverge(
                    ev.seq,
                    "run.finished status vs report.written",
                    report.payload["status"],
                    p["status"],
                )
        for row in rows:
            got = seg.stages.get(row["stage"])
            if got is None:
                if row["status"] != "SKIPPED":  # stages skipped by an early stop record no event
                    self.diverge(
                        ev.seq,
                        f"run.finished stage {row['stage']}",
                        "a stage.finished event for it",
                        "none",
                    )
                continue
            status, reason, seq = got
            if (status, reason) != (row["status"], row["reason"]):
                self.diverge(
                    ev.seq,
                    f"run.finished stage {row['stage']} (from stage.finished seq {seq})",
                    f"{status} {reason!r}",
                    f"{row['status']} {row['reason']!r}",
                )
        recomputed, reasons = decisions.final_verdict(rows, violations)
        if recomputed != p["status"]:
            self.diverge(
                ev.seq,
                "run.finished status (recomputed by decisions.final_verdict)",
                recomputed,
                p["status"],
            )
        if reasons != p["reasons"]:
            self.diverge(ev.seq, "run.finished reasons (recomputed)", reasons, p["reasons"])
        self._check_integrate(seg)
        self.state.final = {
            "seq": ev.seq,
            "status": p["status"],
            "recomputed_status": recomputed,
            "reasons": p["reasons"],
            "stages": rows,
        }
        self.state.policy_violations = violations
        self.state.finished = True
        if report is not None:
            self.state.ledger_head = report.payload["ledger_head"]
        self.last_seg = seg
        self.seg = Segment()

    def on_run_landed(self, ev: Event) -> None:
        """``land`` may follow only a finished PASS (nothing reopened since), once, and commit
        the very DIFF.patch the last report recorded."""
        final, p = self.state.final, ev.payload
        if final is None or final["status"] != "PASS" or self.seg.stages or self.seg.report:
            found = "no run.finished" if final is None else f"last status {final['status']}"
            if final is not None and (self.seg.stages or self.seg.report):
                found += " (the run was reopened since)"
            self.diverge(ev.seq, "run.landed", "after a run.finished PASS", found)
        if any(e.event_type == "run.landed" for e in self.events[:-1]):
            self.diverge(ev.seq, "run.landed", "one landing per run", "a second run.landed")
        report = self.last_seg.report
        recorded = report.payload["files"].get(DIFF_REL) if report is not None else None
        if recorded != p["diff_sha256"]:
            self.diverge(
                ev.seq, f"run.landed diff_sha256 (vs {DIFF_REL} in report.written)",
                recorded, p["diff_sha256"],
            )  # fmt: skip
        if self.state.base_commit is not None and p["base_commit"] != self.state.base_commit:
            self.diverge(
                ev.seq, "run.landed base_commit (vs run.started)", self.state.base_commit,
                p["base_commit"],
            )  # fmt: skip

    def _check_integrate(self, seg: Segment) -> None:
        got = seg.stages.get("integrate")
        if got is None or got[0] in ("FAIL", "SKIPPED"):
            return  # an internal error or a skip is not a decision to recompute
        status, reason, seq = got
        # The refused writes recorded before the stage ended are an input of its status.
        before = [v for at, v in seg.violations if at < seq]
        if seg.merge is None:
            refused = decisions.integrate_refused(reason)
            if (status, reason) != refused:
                self.diverge(
                    seq,
                    "integrate stage (refused before planning a merge: recomputed by "
                    "decisions.integrate_refused)",
                    f"{refused[0]} {refused[1]!r}",
                    f"{status} {reason!r}",
                )
            return
        if not seg.merge["reason"] and all(x["ok"] for x in seg.patches):
            if [x["worker"] for x in seg.patches] != seg.merge["order"]:
                self.diverge(
                    seq, "integrate patches", seg.merge["order"], [x["worker"] for x in seg.patches]
                )
            self.state.check_status = decisions.check_status(seg.checks)[0]
            self._check_configured_checks(seq, seg)
        # The workers the run planned (run.started) that this merge (merge.planned) left out.
        missing = decisions.left_out(self.state.workers, list(seg.merge["depends_on"]))
        found, flaky = self._check_isolation(seg)
        seg.found = found
        expected = decisions.with_policy(
            *decisions.integrate_outcome(
                seg.merge["reason"],
                seg.patches,
                seg.checks,
                seg.conflict,
                missing,
                isolation=found,
                flaky=flaky,
            ),
            before,
        )
        if (status, reason) != expected:
            self.diverge(
                seq,
                "integrate stage (recomputed by decisions.integrate_outcome from run.started's "
                "workers, merge.planned, patch.applied, patch.conflict, check.finished)",
                f"{expected[0]} {expected[1]!r}",
                f"{status} {reason!r}",
            )

    def _check_isolation(self, seg: Segment) -> tuple[isolation.Result | None, str]:
        """Culprit isolation recomputed by :func:`isolation.step` from the recorded probes: each
        probe the one it asks for at that point, the result the one recorded; present exactly
        when a required check failed and the run's config (launched by a release that knows
        isolation) asks for it. (the result, ``integrate.flaky``)."""
        manifest = self.docs.manifest
        at = self.events[-1] if self.events else None
        if manifest is None or at is None or seg.merge is None:
            return None, "block"
        try:
            mode, max_runs, flaky = isolation_settings(manifest)
        except (KeyError, TypeError) as exc:
            self.diverge(at.seq, f"{MANIFEST} config.integrate", "the isolation settings", str(exc))
            return None, "block"
        failed = decisions.failed_required(seg.checks)
        ran = bool(failed) and mode == "on-failure" and all(x["ok"] for x in seg.patches)
        decided = seg.isolation
        if not ran:
            for seq, _ in seg.probes[:1]:
                self.diverge(seq, "isolation.probe", "none (no isolation for this run)", "a probe")
            if decided is not None:
                self.diverge(
                    decided.seq, "isolation.decided", "none (no isolation for this run)", "one"
                )
            return None, flaky
        order, deps = seg.merge["order"], seg.merge["depends_on"]
        probes = [p for _, p in seg.probes]
        for i, (seq, _) in enumerate(seg.probes):
            try:
                isolation.step(order, deps, failed, probes[: i + 1], max_runs)
            except isolation.IsolationMismatch as exc:
                self.diverge(
                    seq,
                    "isolation.probe (the probe core.isolation.step asks for)",
                    exc.expected or "none: the search had ended",
                    probes[i],
                )
                return None, flaky
        answer = isolation.step(order, deps, failed, probes, max_runs)
        if not isolation.is_result(answer):
            self.diverge(
                decided.seq if decided else None,
                "isolation (recomputed by core.isolation.step)",
                f"another probe: {answer}",
                "the search ended",
            )
            return None, flaky
        result: isolation.Result = answer  # type: ignore[assignment]
        if decided is None:
            self.diverge(None, "isolation.decided", result, "none")
            return result, flaky
        inputs = {
            "order": order,
            "depends_on": deps,
            "failed": failed,
            "max_runs": max_runs,
            "probes": len(probes),
        }
        for key, value in {**inputs, **result}.items():
            if decided.payload.get(key) != value:
                self.diverge(
                    decided.seq,
                    f"isolation.decided {key} (recomputed by core.isolation.step from the probes)",
                    value,
                    decided.payload.get(key),
                )
        return result, flaky

    def _check_configured_checks(self, seq: int, seg: Segment) -> None:
        """The checks that ran are exactly the run's configured ones (RUN_MANIFEST.json config):
        none dropped or added, same argv and required flag, in order; with the output tail in the
        ledger when the run's feature flag asks for it, and otherwise only for a failed check."""
        at = self.events[-1] if self.events else None
        if at is None:
            return
        known_r, required = self._run_setting(at, "checks.required")
        known_a, advisory = self._run_setting(at, "checks.advisory")
        if not (known_r and known_a):
            return
        try:
            expected = [
                {"name": c["name"], "argv": list(c["argv"]), "required": flag}
                for cfg, flag in ((required, True), (advisory, False))
                for c in cfg
            ]
        except (KeyError, TypeError):
            self.diverge(
                seq, f"{MANIFEST} config.checks", "checks with a name and an argv", short(required)
            )
            return
        found = [
            {"name": c["name"], "argv": c["argv"], "required": c["required"]}
            for c in seg.check_specs
        ]
        if found != expected:
            self.diverge(
                seq,
                f"check.finished events vs the checks of the run ({MANIFEST} config.checks.required/advisory)",
                expected,
                found,
            )
        known, tail = self._run_setting(at, "feature_flags.record_check_output_in_ledger")
        if known:
            for c in seg.check_specs:
                # A failed check's tail is recorded by this release (earlier ones recorded none).
                allowed = (True,) if tail else ((False, True) if c["failed"] else (False,))
                if c["output_tail"] not in allowed:
                    self.diverge(
                        c["seq"],
                        f"check.finished output_tail (feature_flags.record_check_output_in_ledger in {MANIFEST})",
                        "present" if tail else "absent",
                        "present" if c["output_tail"] else "absent",
                    )


Handler = Callable[[Fold, Event], None]

# Every event type replay checks, by name: a renamed type must be renamed here too (a test holds
# this registry and NO_CHECK against the schema's list of types).
HANDLERS: Mapping[str, Handler] = {
    "run.started": Fold.on_run_started,
    "stage.finished": Fold.on_stage_finished,
    "preflight.check": Fold.on_preflight_check,
    "manifest.written": Fold.on_manifest_written,
    "artifacts.written": Fold.on_artifacts_written,
    "worker.prepared": Fold.on_worker_prepared,
    "bundle.created": Fold.on_bundle_created,
    "bundle.collected": Fold.on_bundle_collected,
    "bundle.imported": Fold.on_bundle_collected,
    "bundle.facts": Fold.on_bundle_facts,
    "review.findings": Fold.on_review_findings,
    "review.agent": Fold.on_review_agent,
    "validation.decided": Fold.on_validation_decided,
    "merge.planned": Fold.on_merge_planned,
    "patch.applied": Fold.on_patch_applied,
    "patch.conflict": Fold.on_patch_conflict,
    "check.finished": Fold.on_check_finished,
    "isolation.probe": Fold.on_isolation_probe,
    "isolation.decided": Fold.on_isolation_decided,
    "policy.violation": Fold.on_policy_violation,
    "integrate.refused": Fold.on_integrate_refused,
    "report.written": Fold.on_report_written,
    "report.html.written": Fold.on_report_html_written,
    "run.finished": Fold.on_run_finished,
    "run.landed": Fold.on_run_landed,
}

# Event types replay checks nothing of beyond the schema: they record no decision it recomputes
# and no input or file hash it compares; they appear in the timeline and the anchor listing.
NO_CHECK: frozenset[str] = frozenset(
    {
        "stage.started",
        "check.started",
        "scenarios.started",
        "run.pending",
        "run.resumed",
        "run.interrupted",
        "worker.started",
        "worker.finished",
        "worktree.created",
        "worktree.removed",
        "gitdir.recorded",
        "gitdir.restored",
        "clean.refused",
        "cleanup.failed",
        "ledger.repaired",
        # A crank's events: replayed by audit.crankreplay (a run's scenarios.finished, from
        # `scenarios run`, is a result recorded beside the run, decided by nothing).
        "crank.started",
        "gate.passed",
        "gate.awaiting",
        "gate.approved",
        "gate.rejected",
        "gate.changed",
        "crank.resumed",
        "crank.finished",
        "holdout.sealed",
        "iteration.started",
        "iteration.committed",
        "iteration.decided",
        "feedback.compiled",
        "scenarios.finished",
    }
)


def registry_problems(
    schema_types: Collection[str],
    handlers: Collection[str] = HANDLERS.keys(),
    no_check: Collection[str] = NO_CHECK,
) -> list[str]:
    """What is wrong with a handler registry against the schema's event types (empty if none):
    a type neither handled nor declared unchecked, a handler or exemption for a type the schema
    does not know (a renamed event), or a type both handled and exempt."""
    known = set(schema_types)
    problems = [
        f"{t}: no handler and not in NO_CHECK"
        for t in sorted(known - set(handlers) - set(no_check))
    ]
    problems += [
        f"{t}: handler for a type not in the schema" for t in sorted(set(handlers) - known)
    ]
    problems += [f"{t}: in NO_CHECK but not in the schema" for t in sorted(set(no_check) - known)]
    problems += [
        f"{t}: both handled and in NO_CHECK" for t in sorted(set(handlers) & set(no_check))
    ]
    return problems


def fold(run_id: str, events: Iterable[Event], docs: RunDocs) -> Fold:
    """Fold one run's events (in chain order) into its state; see the module docstring."""
    folded = Fold(run_id, docs)
    folded.run(events)
    return folded
