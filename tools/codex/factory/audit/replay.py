"""``ledger-replay``: rebuild a run from its ledger events and audit it against the artifacts.

The replay trusts nothing it can recompute:

1. the whole hash chain is verified first (``Ledger.verify``);
2. the run's events are folded, in chain order, into its state, and every decision is
   recomputed from the inputs recorded in the events with the same pure functions the live run
   used (:mod:`decisions`): the validation judgement from ``bundle.facts`` + the policy in
   ``validation.decided``, the merge order from ``merge.planned``'s ``depends_on``, the check
   status from ``check.finished``, the integrate stage from those, and the final status from
   the stage rows of ``run.finished``;
3. that state is compared with the files on disk: the sha256 of every artifact recorded at
   write time (``artifacts.written``, ``bundle.created``, ``bundle.facts``' bundle hash,
   ``validation.decided``, ``check.finished``, ``report.written`` and the attestation files it
   vouches for), Z's STATUS.json and FINAL_REPORT.txt, VALIDATION.json, the workers' STATUS.json;
4. the ledger head written into FINAL_REPORT.txt / STATUS.json / ``report.written`` must be the
   hash of the ledger line at that seq, and every line up to it must hash as recorded and link
   to the one before: a forger who edits a payload and re-chains every later hash still cannot
   change the head already printed in the report.

Nothing read is trusted before it is checked: every ledger event of the run against
``schemas/ledger_event.schema.json`` (an event that does not match is a divergence and is not
folded), and every artifact read for its content (RUN_MANIFEST.json, VALIDATION.json, Z's and
the workers' STATUS.json, FINAL_REPORT.txt, the attestation sums) parsed and checked against its
schema before use: a malformed, empty, missing or unreadable file (a directory in its place)
is a one-line divergence naming the file and the rule, never an internal error.

Recorded inputs are re-derived where the evidence is still on disk: for every ``bundle.facts``
event whose bundle folder still hashes to the recorded ``bundle_hash``, the facts are gathered
again from the bundle (:func:`facts.gather_facts`, the base tree from the run's base commit)
and must equal the recorded ones, so forged facts (a widened scope, a hidden touched path)
cannot pass even when the decisions, VALIDATION.json and its hash were forged to match and the
ledger was re-chained.

What the report's anchor does not cover: the head printed in FINAL_REPORT.txt is the ledger
line just before ``report.written``; that event, ``run.finished`` and the epilogue after it
(``worktree.removed``, ``clean.refused``, ...) lie beyond it. ``report.written`` and
``run.finished`` are cross-checked with STATUS.json and FINAL_REPORT.txt (and a missing
``run.finished`` is a divergence), but **events after ``run.finished`` are not covered by the
report's anchor**: deleting or editing them and re-chaining the ledger and its head file is not
detectable from this run alone. Replay lists them (``state.anchor``) and says whether a later
run's FINAL_REPORT.txt, whose head lies beyond them, anchors them instead (its head is then
checked like this run's own: a mismatch is a divergence); without one, keep a copy of the
ledger's last line elsewhere to anchor them. A FINAL_REPORT.txt on disk that no
``report.written`` event records (the run's tail removed) is a divergence, and its head is
checked too.

Every mismatch is a :class:`Divergence` (event seq, what, expected, found), one line each.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tools.codex.factory.core import decisions, validation
from tools.codex.factory.core.ids import validate_run_id
from tools.codex.factory.core.paths import ATTEST_DIR, MANIFEST, VALIDATION, Z_DIR, worker_dirname
from tools.codex.factory.errors import FactoryError, UsageError
from tools.codex.factory.infra import gitops, jsonio, schemas
from tools.codex.factory.infra.writer import sha256_file
from tools.codex.factory.ledger.store import GENESIS, Event, Ledger, line_hash_ok
from tools.codex.factory.records.status import Status
from tools.codex.factory.records.validation import AppliedPatch, CheckResult, Violation
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.facts import (
    V1_KEYS,
    BaseTree,
    GitSide,
    Limits,
    bundle_hash,
    file_hashes,
    gather_facts,
)
from tools.codex.factory.run.handle import run_setting
from tools.codex.factory.run.outcome import Outcome
from tools.codex.factory.run.validate import base_tree, limits, policy

REPORT_REL = f"{Z_DIR}/FINAL_REPORT.txt"
STATUS_REL = f"{Z_DIR}/STATUS.json"
EXCERPT_REL = f"{ATTEST_DIR}/ledger_excerpt.jsonl"
_HEAD_LINE = re.compile(r"^ledger head: seq=(\d+) hash=([0-9a-f]{64})\s*$", re.M)
_STATUS_LINE = re.compile(r"^STATUS:\s+(\S+)\s*$", re.M)
_SUM_LINE = re.compile(r"^([0-9a-f]{64})  (.+)$")
# Every character str.splitlines() breaks at, escaped: a timeline entry or divergence stays one line.
_ONE_LINE = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


@dataclass(frozen=True)
class Divergence:
    seq: int | None
    what: str
    expected: str
    found: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "what": self.what, "expected": self.expected, "found": self.found}

    def line(self) -> str:
        where = f"seq={self.seq}" if self.seq is not None else "seq=-"
        return f"DIVERGENCE {where} {self.what}: expected {self.expected}; found {self.found}"


@dataclass
class _Rec:
    """A recorded sha256 for one file under the run folder."""

    sha: str
    seq: int
    source: str


@dataclass
class _Snap:
    """What the ledger last said about one worker folder: per-file hashes or a bundle hash."""

    seq: int
    source: str
    files: dict[str, str] | None = None
    bundle_hash: str | None = None
    complete: bool = False
    before: dict[str, str] | None = None  # the per-file record a bundle hash superseded


@dataclass
class _Segment:
    """Events since the previous ``run.finished``: the inputs of the next final status."""

    stages: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    merge: dict[str, Any] | None = None
    patches: list[AppliedPatch] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    check_specs: list[dict[str, Any]] = field(
        default_factory=list
    )  # name, argv, required, output_tail recorded
    violations: list[tuple[int, Violation]] = field(default_factory=list)  # (seq, violation)
    conflict: str = ""
    report: Event | None = None


def _short(value: Any, limit: int = 160) -> str:
    try:
        text = value if isinstance(value, str) else jsonio.canonical(value).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):
        text = repr(value)
    text = text.translate(_ONE_LINE)  # one divergence, one line
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(ev: Event) -> str:
    """One readable line per event (shared with ``watch``); a malformed payload still gets one."""
    try:
        return _describe(ev).translate(_ONE_LINE)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return _short(
            f"{ev.seq!s:>6}  {ev.ts_utc}  {ev.stage or '-'!s:<16} {ev.event_type!s:<20} (malformed payload)",
            400,
        )


def _describe(ev: Event) -> str:
    p = ev.payload
    t = ev.event_type
    bits: list[str] = []
    if t == "run.started":
        bits = [
            f"base_ref={p.get('base_ref')}",
            f"base_commit={str(p.get('base_commit', ''))[:12]}",
            f"workers={','.join(p.get('workers', []))}",
            f"dry_run={str(p.get('dry_run')).lower()}",
        ]
    elif t == "stage.finished":
        bits = [f"status={p.get('status')}"] + (
            [f"reason={_short(p['reason'])}"] if p.get("reason") else []
        )
    elif t == "preflight.check":
        bits = [f"{p.get('name')}={'ok' if p.get('ok') else 'FAILED'}", _short(p.get("detail", ""))]
    elif t in ("bundle.created", "artifacts.written"):
        bits = ([f"worker={p['worker']}"] if "worker" in p else []) + [
            f"files={len(p.get('files', {}))}"
        ]
    elif t == "bundle.facts":
        f = p.get("facts", {})
        bits = [
            f"worker={p.get('worker')}",
            f"status={f.get('status')}",
            f"touched={len(f.get('touched', []))}",
            f"files_changed={len(f.get('files_changed', []))}",
        ]
    elif t == "validation.decided":
        verdicts = ",".join(f"{w}={v}" for w, v in sorted(p.get("verdicts", {}).items()))
        bits = [
            f"status={p.get('status')}",
            f"findings={p.get('findings')}",
            f"overlaps={len(p.get('overlaps', []))}",
            f"verdicts={verdicts}",
        ]
    elif t == "merge.planned":
        bits = [f"order={','.join(p.get('order', [])) or '-'}"] + (
            [f"reason={p['reason']}"] if p.get("reason") else []
        )
    elif t == "patch.applied":
        bits = [
            f"worker={p.get('worker')}",
            "ok" if p.get("ok") else "FAILED",
            f"files={len(p.get('files', []))}",
        ]
    elif t == "check.finished":
        rc = "timeout" if p.get("timed_out") else f"rc={p.get('rc')}"
        bits = [f"name={p.get('name')}", "required" if p.get("required") else "advisory", rc]
    elif t == "report.written":
        head = p.get("ledger_head", {})
        bits = [
            f"status={p.get('status')}",
            f"files={len(p.get('files', {}))}",
            f"head=seq{head.get('seq')}",
        ]
    elif t == "run.finished":
        bits = [f"status={p.get('status')}"]
    elif t == "ledger.repaired":
        bits = [f"side_file={p.get('side_file')}", f"torn_bytes={p.get('torn_bytes')}"]
    else:
        for key in ("status", "rc", "worker", "name", "path", "reason"):
            if key in p and p[key] not in (None, ""):
                bits.append(f"{key}={_short(p[key])}")
    text = " ".join(b for b in bits if b)
    return f"{ev.seq:>6}  {ev.ts_utc}  {ev.stage or '-':<16} {t:<20} {text}".rstrip()


def _worker_dir_of(rel: str) -> str | None:
    first = rel.split("/", 1)[0]
    return first if first.endswith("_worker") and "/" in rel else None


def _sha_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Replayer:
    def __init__(self, ctx: Context, run_id: str) -> None:
        self.ctx = ctx
        self.run_id = run_id
        self.run_dir = ctx.layout.run_dir(run_id)
        self.divergences: list[Divergence] = []
        self.timeline: list[str] = []
        self.files: dict[str, _Rec] = {}
        self.snaps: dict[str, _Snap] = {}
        self.facts: dict[str, tuple[dict[str, Any], int]] = {}
        self.fact_events: list[tuple[str, dict[str, Any], int]] = []  # every bundle.facts, in order
        self.seg = _Segment()
        self.last_seg = _Segment()
        self.events: list[Event] = []
        self.heads: list[tuple[int, str, str, int | None]] = []  # (seq, hash, source, event seq)
        self.manifest: dict[str, Any] | None = None
        self.manifest_problem: str | None = None  # why RUN_MANIFEST.json cannot be used
        self.later_reports: list[
            tuple[int, str]
        ] = []  # (seq, run_id) of other runs' report.written
        self.disk_report_head: tuple[int, str] | None = None  # the head line of FINAL_REPORT.txt
        self.later_anchor: dict[str, Any] | None = (
            None  # a later run's report head covering this run
        )
        self.z_listing: tuple[set[str], int] | None = None  # Z files per the last report.sha256
        self.state: dict[str, Any] = {
            "run_id": run_id,
            "kind": None,
            "base_ref": None,
            "base_commit": None,
            "dry_run": None,
            "workers": [],
            "plan_hash": None,
            "events": 0,
            "stages": {},
            "preflight": [],
            "validation": None,
            "merge": None,
            "patches": [],
            "checks": [],
            "check_status": None,
            "final": None,
            "ledger_head": None,
            "refusals": [],
            "policy_violations": [],
            "finished": False,
            "artifacts_checked": 0,
            "facts_rederived": 0,
            "anchor": None,
        }

    # -- helpers -------------------------------------------------------------------------
    def diverge(self, seq: int | None, what: str, expected: Any, found: Any) -> None:
        self.divergences.append(Divergence(seq, what, _short(expected, 400), _short(found, 400)))

    def _record_file(self, rel: str, sha: str, seq: int, source: str) -> None:
        wdir = _worker_dir_of(rel)
        if wdir is None:
            self.files[rel] = _Rec(sha, seq, source)
        else:
            snap = self.snaps.get(wdir)
            if snap is None or snap.seq != seq or snap.files is None:
                snap = _Snap(seq, source, files={})
                self.snaps[wdir] = snap
            assert snap.files is not None
            snap.files[rel] = sha

    def _record_many(self, files: dict[str, str], seq: int, source: str) -> None:
        for rel, sha in sorted(files.items()):
            self._record_file(rel, sha, seq, source)

    def read_doc(self, rel: str, schema: str) -> tuple[Any, str | None]:
        """Read a JSON artifact and check it against ``schemas/<schema>.schema.json``.

        Returns (document, None) or (None, a one-line reason naming the rule it broke).
        """
        try:
            doc = jsonio.read_json(self.run_dir / rel, rel)
        except UsageError as exc:
            return None, str(exc)
        problems = schemas.errors(schema, doc)
        if problems:
            where, msg = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return None, f"{rel}: breaks schemas/{schema}.schema.json at {where}: {msg}{more}"
        return doc, None

    def _read_manifest(self) -> dict[str, Any] | None:
        """RUN_MANIFEST.json once checked against its schema and this run; None if unusable."""
        if self.manifest is None and self.manifest_problem is None:
            doc, problem = self.read_doc(MANIFEST, "run_manifest")
            if problem is None and doc["run_id"] != self.run_id:
                problem = f"{MANIFEST}: names run {doc['run_id']!r}, not {self.run_id!r}"
            if problem is None:
                self.manifest = doc
            else:
                self.manifest_problem = problem
        return self.manifest

    # -- the fold ------------------------------------------------------------------------
    def fold(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.events.append(ev)
            self.timeline.append(describe(ev))
            problems = schemas.errors("ledger_event", ev.as_dict())
            if problems:  # a malformed event is reported, never folded
                where, msg = problems[0]
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                self.diverge(
                    ev.seq,
                    f"ledger event {_short(ev.event_type, 40)} (schemas/ledger_event.schema.json)",
                    "an event that matches the schema",
                    f"{where}: {msg}{more}",
                )
                continue
            handler = getattr(self, "_on_" + ev.event_type.replace(".", "_"), None)
            if handler is not None:
                try:
                    handler(ev)
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
        self.state["events"] = len(self.events)
        if self.seg.report is not None:
            r = self.seg.report
            self.diverge(
                r.seq,
                "run.finished",
                f"a run.finished event after report.written (seq {r.seq})",
                "none: the ledger ends before the run finished (last event removed?)",
            )

    def _on_run_started(self, ev: Event) -> None:
        p = ev.payload
        self.state.update(
            kind=p.get("kind"),
            base_ref=p["base_ref"],
            base_commit=p["base_commit"],
            dry_run=p["dry_run"],
            workers=list(p["workers"]),
            plan_hash=p["plan_hash"],
        )

    def _on_stage_finished(self, ev: Event) -> None:
        status, reason = ev.payload["status"], ev.payload.get("reason", "")
        self.seg.stages[ev.stage] = (status, reason, ev.seq)
        self.state["stages"][ev.stage] = {"status": status, "reason": reason, "seq": ev.seq}

    def _on_preflight_check(self, ev: Event) -> None:
        p = ev.payload
        self.state["preflight"].append({"name": p["name"], "ok": p["ok"], "detail": p["detail"]})

    def _on_bundle_created(self, ev: Event) -> None:
        wdir = worker_dirname(ev.payload["worker"])
        self.snaps[wdir] = _Snap(ev.seq, "bundle.created", files={})
        self._record_many(ev.payload["files"], ev.seq, "bundle.created")

    def _on_artifacts_written(self, ev: Event) -> None:
        for wdir in {_worker_dir_of(r) for r in ev.payload["files"]} - {None}:
            assert wdir is not None
            self.snaps[wdir] = _Snap(ev.seq, "artifacts.written", files={})
        self._record_many(ev.payload["files"], ev.seq, "artifacts.written")

    def _on_bundle_collected(self, ev: Event) -> None:
        """A bundle collected from a real worker's worktree: its artifacts are the whole bundle."""
        artifacts = ev.payload.get("artifacts")
        if isinstance(artifacts, dict):
            self.snaps[worker_dirname(ev.payload["worker"])] = _Snap(
                ev.seq, "bundle.collected", files={}
            )
            self._record_many(artifacts, ev.seq, "bundle.collected")

    def _on_bundle_imported(self, ev: Event) -> None:
        """A bundle imported from a patch file or commits: likewise the whole bundle."""
        self._on_bundle_collected(ev)

    def _on_worker_prepared(self, ev: Event) -> None:
        files = ev.payload.get("files")
        if isinstance(files, dict):
            self._record_many(files, ev.seq, "worker.prepared")

    def _on_bundle_facts(self, ev: Event) -> None:
        w = ev.payload["worker"]
        facts = ev.payload["facts"]
        if facts["worker"] != w:
            self.diverge(ev.seq, "bundle.facts worker", w, facts["worker"])
        self.facts[w] = (facts, ev.seq)
        self.fact_events.append((w, facts, ev.seq))
        prev = self.snaps.get(worker_dirname(w))
        before = (
            prev.files
            if prev is not None and prev.files is not None
            else (prev.before if prev else None)
        )
        self.snaps[worker_dirname(w)] = _Snap(
            ev.seq, "bundle.facts", bundle_hash=facts["bundle_hash"], before=before
        )

    def _on_validation_decided(self, ev: Event) -> None:
        p = ev.payload
        workers = list(p["workers"])
        facts: dict[str, Any] = {}
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
        result = validation.evaluate(facts, p["policy"], list(p.get("gitdir_changed", [])))
        recomputed: dict[str, Any] = dict(result)
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
        self.state["validation"] = {
            "seq": ev.seq,
            "workers": workers,
            "policy": p["policy"],
            "bundle_hashes": {w: facts[w]["bundle_hash"] for w in workers},
            **result,
        }
        if all("version" in facts[w] for w in workers):
            # What integration applies: the judged bytes and declarations, per worker.
            self.state["validation"]["apply_sha256"] = {
                w: facts[w]["apply_sha256"] for w in workers
            }
            self.state["validation"]["depends_on"] = {
                w: list(facts[w]["depends_on"]) for w in workers
            }
            self.state["validation"]["eol_normalised"] = {
                w: bool(facts[w]["eol_normalised"]) for w in workers
            }
            self.state["validation"]["files_sha256"] = {
                w: dict(facts[w]["files_sha256"]) for w in workers
            }
        self._record_file(VALIDATION, p["validation_sha256"], ev.seq, "validation.decided")

    def _limits(self) -> Limits:
        """The run's limits (its manifest's config; defaults when it is unusable)."""

        manifest = self._read_manifest()
        if manifest is None:
            return Limits()
        try:
            return limits(manifest)
        except (KeyError, TypeError, ValueError):
            return Limits()

    def _on_manifest_written(self, ev: Event) -> None:
        self._record_file(MANIFEST, ev.payload["sha256"], ev.seq, "manifest.written")

    def _run_setting(self, ev: Event, dotted: str) -> tuple[bool, Any]:
        """(True, value) of a setting in the run's RUN_MANIFEST.json config; (False, None) if the
        manifest is unusable (reported by the manifest check) or lacks it (reported here)."""

        manifest = self._read_manifest()
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

        manifest = self._read_manifest()
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

    def _on_merge_planned(self, ev: Event) -> None:
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
        v = self.state["validation"]
        if v is None or v["status"] != "PASS":
            self.diverge(
                ev.seq,
                "merge.planned precondition",
                "a PASS validation.decided before integration",
                v["status"] if v else "no validation",
            )
        elif sorted(v["workers"]) != sorted(deps):
            self.diverge(ev.seq, "merge.planned workers", sorted(v["workers"]), sorted(deps))
        manifest = self._read_manifest()
        if manifest is not None:
            plan_deps = {
                w["id"]: list(w.get("depends_on", []))
                for w in manifest.get("plan", {}).get("workers", [])
            }
            for w in sorted(deps):
                handoff = self.facts.get(w, ({"depends_on": []}, 0))[0].get("depends_on", [])
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
        self.seg.check_specs = []
        self.state["merge"] = self.seg.merge

    def _on_patch_applied(self, ev: Event) -> None:
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
        self.state["patches"] = self.seg.patches

    def _on_check_finished(self, ev: Event) -> None:
        p = ev.payload
        self.seg.checks.append(
            {
                "name": p["name"],
                "required": bool(p["required"]),
                "rc": p["rc"],
                "timed_out": bool(p["timed_out"]),
            }
        )
        self.seg.check_specs.append(
            {
                "name": p["name"],
                "argv": list(p["argv"]),
                "required": bool(p["required"]),
                "seq": ev.seq,
                "output_tail": "output_tail" in p,
            }
        )
        self.state["checks"] = self.seg.checks
        self._record_many(p.get("logs", {}), ev.seq, "check.finished")

    def _on_integrate_refused(self, ev: Event) -> None:
        self.state["refusals"].append({"seq": ev.seq, "reason": ev.payload.get("reason", "")})

    def _on_policy_violation(self, ev: Event) -> None:
        self.seg.violations.append(
            (ev.seq, {"path": str(ev.payload["path"]), "reason": str(ev.payload["reason"])})
        )

    def _on_patch_conflict(self, ev: Event) -> None:
        self.seg.conflict = str(ev.payload["error"])

    def _on_report_written(self, ev: Event) -> None:
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
            (
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
        for name in ("bundles.sha256", "report.sha256"):
            rel = f"{ATTEST_DIR}/{name}"
            recorded = p.get("attestations", {}).get(rel) or p["files"].get(rel)
            path = self.run_dir / rel
            if recorded is None or not path.is_file() or sha256_file(path) != recorded:
                continue  # the artifact check reports it
            listed: dict[str, str] = {}
            for line in path.read_bytes().decode("utf-8", "replace").splitlines():
                m = _SUM_LINE.match(line)
                if m:
                    listed[m.group(2)] = m.group(1)
            for wdir in {_worker_dir_of(r) for r in listed} - {None}:
                assert wdir is not None
                self.snaps[wdir] = _Snap(
                    ev.seq, f"{rel} (vouched for by report.written)", files={}, complete=True
                )
            for rel2, sha in sorted(listed.items()):
                self._record_file(rel2, sha, ev.seq, f"{rel} (vouched for by report.written)")
            if name == "report.sha256":
                self.z_listing = (set(listed), ev.seq)

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

    def _on_run_finished(self, ev: Event) -> None:
        p = ev.payload
        seg = self.seg
        rows = list(p["stages"])
        report = seg.report
        reached = any(r["stage"] == "integrate" and r["status"] != "SKIPPED" for r in rows)
        if report is None:
            # Only a run stopped before integration (preflight or launch refused) ends without a report.
            if reached or not rows:
                self.diverge(ev.seq, "run.finished", "a report.written event before it", "none")
            violations: list[Any] = []
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
        self._check_integrate(ev, seg)
        self.state["final"] = {
            "seq": ev.seq,
            "status": p["status"],
            "recomputed_status": recomputed,
            "reasons": p["reasons"],
            "stages": rows,
        }
        self.state["policy_violations"] = violations
        self.state["finished"] = True
        if report is not None:
            self.state["ledger_head"] = report.payload["ledger_head"]
        self.last_seg = seg
        self.seg = _Segment()

    def _check_integrate(self, ev: Event, seg: _Segment) -> None:
        got = seg.stages.get("integrate")
        if got is None or got[0] in ("FAIL", "SKIPPED"):
            return  # an internal error or a skip is not a decision to recompute
        status, reason, seq = got
        # The refused writes recorded before the stage ended are an input of its status.
        before = [v for at, v in seg.violations if at < seq]
        if seg.merge is None:
            if status != "BLOCKED":
                self.diverge(
                    seq,
                    "integrate stage",
                    "BLOCKED (integration refused before planning a merge)",
                    status,
                )
            return
        if not seg.merge["reason"] and all(x["ok"] for x in seg.patches):
            if [x["worker"] for x in seg.patches] != seg.merge["order"]:
                self.diverge(
                    seq, "integrate patches", seg.merge["order"], [x["worker"] for x in seg.patches]
                )
            self.state["check_status"] = decisions.check_status(seg.checks)[0]
            self._check_configured_checks(seq, seg)
        expected = decisions.with_policy(
            *decisions.integrate_outcome(
                seg.merge["reason"], seg.patches, seg.checks, seg.conflict
            ),
            before,
        )
        if (status, reason) != expected:
            self.diverge(
                seq,
                "integrate stage (recomputed by decisions.integrate_outcome from merge.planned, "
                "patch.applied, patch.conflict, check.finished)",
                f"{expected[0]} {expected[1]!r}",
                f"{status} {reason!r}",
            )

    def _check_configured_checks(self, seq: int, seg: _Segment) -> None:
        """The checks that ran are exactly the run's configured ones (RUN_MANIFEST.json config):
        none dropped or added, same argv and required flag, in order; with the output tail in the
        ledger exactly when the run's feature flag asks for it."""
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
                seq, f"{MANIFEST} config.checks", "checks with a name and an argv", _short(required)
            )
            return
        found = [{k: c[k] for k in ("name", "argv", "required")} for c in seg.check_specs]
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
                if c["output_tail"] != bool(tail):
                    self.diverge(
                        c["seq"],
                        f"check.finished output_tail (feature_flags.record_check_output_in_ledger in {MANIFEST})",
                        "present" if tail else "absent",
                        "present" if c["output_tail"] else "absent",
                    )

    # -- comparisons with the disk ----------------------------------------------------------
    def check_disk(self) -> None:
        steps = [
            self._check_manifest,
            self._check_files,
            self._check_validation_doc,
            self._check_worker_status,
            self._check_facts,
        ]
        if self.state["final"] is not None and self.last_seg.report is not None:
            steps += [self._check_status_doc, self._check_report]
        else:
            steps.append(self._check_unrecorded_report)
        for step in steps:
            try:
                step()
            except (
                OSError
            ) as exc:  # an unreadable file or folder: tampered or broken, never a crash
                self.diverge(
                    None,
                    self._rel(exc.filename),
                    "a readable file",
                    f"cannot read it ({exc.strerror or type(exc).__name__})",
                )

    def _rel(self, filename: Any) -> str:
        if not filename:
            return "a file of the run"
        path = Path(str(filename))
        try:
            return path.relative_to(self.run_dir).as_posix()
        except ValueError:
            return str(filename)

    def _check_manifest(self) -> None:
        if self.state["plan_hash"] is None:
            return
        manifest = self._read_manifest()
        if manifest is None:
            self.diverge(
                None,
                MANIFEST,
                "the run manifest launch wrote",
                self.manifest_problem or "unreadable",
            )
            return
        digest = _sha_bytes(jsonio.canonical(manifest.get("plan")))
        if digest != self.state["plan_hash"]:
            self.diverge(
                None,
                f"{MANIFEST} plan (sha256 of the canonical plan vs run.started plan_hash)",
                self.state["plan_hash"],
                digest,
            )
        for key in ("base_commit", "workers"):
            if manifest.get(key) != self.state[key]:
                self.diverge(
                    None, f"{MANIFEST} {key} vs run.started", self.state[key], manifest.get(key)
                )

    def _check_files(self) -> None:
        checked = 0
        for rel, rec in sorted(self.files.items()):
            checked += 1
            self._compare(rel, rec.sha, rec.seq, rec.source)
        for wdir, snap in sorted(self.snaps.items()):
            folder = self.run_dir / wdir
            if snap.bundle_hash is not None:
                checked += 1
                now = bundle_hash(folder, self._limits())
                if now != snap.bundle_hash:
                    self.diverge(
                        snap.seq,
                        f"{wdir}/ bundle hash (recorded by {snap.source})",
                        f"sha256 {snap.bundle_hash}",
                        f"sha256 {now}{self._name_changed(snap)}",
                    )
                continue
            for rel, sha in sorted((snap.files or {}).items()):
                checked += 1
                self._compare(rel, sha, snap.seq, snap.source)
            if snap.complete:
                self._extra_files(folder, wdir, set(snap.files or {}), snap.seq, snap.source)
        if self.z_listing is not None:
            listed, seq = self.z_listing
            self._extra_files(
                self.run_dir / Z_DIR, Z_DIR, listed, seq, f"{ATTEST_DIR}/report.sha256"
            )
        self.state["artifacts_checked"] = checked

    def _name_changed(self, snap: _Snap) -> str:
        """Name the files that differ from the per-file record the bundle hash superseded."""
        if not snap.before:
            return ""
        names = [
            rel
            for rel, sha in sorted(snap.before.items())
            if not (self.run_dir / rel).is_file() or sha256_file(self.run_dir / rel) != sha
        ]
        return (
            f" (differs from the earlier per-file record in: {', '.join(names)})" if names else ""
        )

    def _compare(self, rel: str, sha: str, seq: int, source: str) -> None:
        path = self.run_dir / rel
        if not path.is_file():
            found = "a folder, not a file" if path.is_dir() else "the file is missing"
            self.diverge(seq, f"{rel} (recorded by {source})", f"sha256 {sha}", found)
            return
        now = sha256_file(path)
        if now != sha:
            self.diverge(
                seq,
                f"{rel} (recorded by {source})",
                f"sha256 {sha}",
                f"sha256 {now} (file changed)",
            )

    def _extra_files(
        self, folder: Path, prefix: str, listed: set[str], seq: int, source: str
    ) -> None:
        for rel, _sha in file_hashes(folder, prefix, self._limits().max_file_bytes):
            if rel not in listed:
                self.diverge(seq, f"{rel} (not in {source})", "no such file", "an unrecorded file")

    def _check_validation_doc(self) -> None:
        v = self.state["validation"]
        if v is None:
            return
        doc, problem = self.read_doc(VALIDATION, "validation")
        if problem is not None:
            self.diverge(v["seq"], VALIDATION, "the document validation.decided wrote", problem)
            return
        for key in (
            "status",
            "workers",
            "verdicts",
            "findings",
            "warnings",
            "overlaps",
            "touched",
            "policy",
            "bundle_hashes",
            "apply_sha256",
            "depends_on",
            "eol_normalised",
            "files_sha256",
        ):
            if key not in v and key not in doc:
                continue  # validated by an earlier release
            if doc.get(key) != v.get(key):
                self.diverge(
                    v["seq"],
                    f"{VALIDATION} {key} (recomputed from bundle.facts)",
                    v.get(key),
                    doc.get(key),
                )

    def _check_worker_status(self) -> None:
        for w, (facts, seq) in sorted(self.facts.items()):
            rel = f"{worker_dirname(w)}/STATUS.json"
            if facts["status"] is None:
                continue  # it was missing or malformed at validation: the facts say so
            doc, problem = self.read_doc(rel, "worker_status")
            if problem is not None:
                self.diverge(
                    seq,
                    rel,
                    f"the worker status bundle.facts read (status {facts['status']})",
                    problem,
                )
            elif doc["status"] != facts["status"]:
                self.diverge(
                    seq, f"{rel} status (recorded in bundle.facts)", facts["status"], doc["status"]
                )

    def _check_facts(self) -> None:
        """Re-derive every ``bundle.facts`` whose bundle still hashes as recorded; they must agree.

        The bundle bytes are pinned by the recorded bundle hash, so the facts read from them are
        not an input to trust but a function to recompute: a forged fact (a wider scope, a hidden
        path) differs from what the bundle says.
        """

        now: dict[str, str] = {}
        derived: dict[tuple[str, str], Mapping[str, Any]] = {}
        base_lower: BaseTree | None = None
        for w, recorded, seq in self.fact_events:
            wdir = worker_dirname(w)
            if wdir not in now:
                now[wdir] = bundle_hash(self.run_dir / wdir, self._limits())
            if recorded["bundle_hash"] != now[wdir]:
                continue  # the bundle changed since: a later record or the bundle-hash check covers it
            if base_lower is None:
                base = self.state["base_commit"]
                if not isinstance(base, str):
                    self.diverge(
                        seq,
                        f"recorded facts for {w} (re-derivation)",
                        "the base commit from run.started",
                        "no run.started event: the base tree is unknown",
                    )
                    return
                try:
                    base_lower = base_tree(self.ctx, base)
                except FactoryError as exc:
                    self.diverge(
                        seq,
                        f"recorded facts for {w} (re-derivation)",
                        f"the tree of base commit {base} in this repository",
                        _short(str(exc), 300),
                    )
                    return
            key = (w, now[wdir])
            if key not in derived:
                side = (
                    GitSide(self.ctx.repo, gitops.object_format(self.ctx.repo))
                    if "version" in recorded
                    else None
                )
                derived[key] = gather_facts(self.run_dir, w, base_lower, self._limits(), None, side)
                self.state["facts_rederived"] += 1
            fresh = derived[key]
            # A fact recorded by an earlier release is compared on the keys it had.
            names = set(fresh) | set(recorded) if "version" in recorded else set(V1_KEYS)
            for name in sorted(names):
                if fresh.get(name) != recorded.get(name):
                    self.diverge(
                        seq,
                        f"recorded facts for {w} differ from the bundle {wdir}/ "
                        f"(re-derived by facts.gather_facts): {name}",
                        fresh.get(name),
                        recorded.get(name),
                    )

    def _check_unrecorded_report(self) -> None:
        """A FINAL_REPORT.txt on disk that no report.written (followed by run.finished) records."""
        if any(ev.event_type == "report.written" for ev in self.events):
            return  # recorded (a report.written without run.finished is reported by the fold)
        path = self.run_dir / REPORT_REL
        if not (path.exists() or path.is_symlink()):
            return
        text, problem = self._read_report_text()
        heads = _HEAD_LINE.findall(text) if text is not None else []
        said = (
            f"; it says ledger head seq={heads[-1][0]}"
            if heads
            else (f"; {problem}" if problem else "")
        )
        self.diverge(
            None,
            f"{REPORT_REL} (no report.written event records it)",
            "report.written and run.finished events for the report on disk",
            f"none in the ledger (events removed?){said}",
        )
        if heads:
            self.heads.append((int(heads[-1][0]), heads[-1][1], f"{REPORT_REL} ledger head", None))
            self.disk_report_head = (int(heads[-1][0]), heads[-1][1])

    def _read_report_text(self, run_dir: Path | None = None) -> tuple[str | None, str]:
        path = (run_dir or self.run_dir) / REPORT_REL
        if path.is_dir():
            return None, "a folder, not a file"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, "the file is missing"
        except OSError as exc:
            return None, f"cannot read it ({exc.strerror or type(exc).__name__})"
        return data.decode("utf-8", "replace"), ""

    def _check_status_doc(self) -> None:
        final = self.state["final"]
        seg = self.last_seg
        doc, problem = self.read_doc(STATUS_REL, "integrator_status")
        if problem is not None:
            self.diverge(
                final["seq"], STATUS_REL, f"Z's status document (status {final['status']})", problem
            )
            return
        # integrate's own results reach STATUS.json only when the stage returned (not raised).
        stage = seg.stages.get("integrate")
        returned = (
            seg.merge is not None
            and stage is not None
            and stage[0] != "FAIL"
            and not self.state["policy_violations"]
        )
        expected: dict[str, Any] = {
            "status": final["status"],
            "reasons": final["reasons"],
            "stages": final["stages"],
            "policy_violations": self.state["policy_violations"],
        }
        if returned or seg.merge is None:
            merged = seg.merge is not None and not seg.merge["reason"]
            expected["checks"] = (
                [{k: c[k] for k in ("name", "required", "rc", "timed_out")} for c in seg.checks]
                if merged
                else []
            )
            expected["merge_order"] = seg.merge["order"] if merged and seg.merge else []
            expected["applied"] = [x["worker"] for x in seg.patches if x["ok"]] if merged else []
        found_checks = [
            {k: c.get(k) for k in ("name", "required", "rc", "timed_out")}
            for c in doc.get("checks", [])
        ]
        for key, exp in expected.items():
            got = found_checks if key == "checks" else doc.get(key)
            if got != exp:
                self.diverge(final["seq"], f"{STATUS_REL} {key} (replayed)", exp, got)
        if seg.report is not None and doc.get("ledger_head") != seg.report.payload["ledger_head"]:
            self.diverge(
                seg.report.seq,
                f"{STATUS_REL} ledger_head vs report.written",
                seg.report.payload["ledger_head"],
                doc.get("ledger_head"),
            )
        head = doc.get("ledger_head")
        if (
            isinstance(head, dict)
            and isinstance(head.get("seq"), int)
            and isinstance(head.get("hash"), str)
        ):
            self.heads.append((head["seq"], head["hash"], f"{STATUS_REL} ledger_head", None))

    def _check_report(self) -> None:
        final = self.state["final"]
        text, problem = self._read_report_text()
        if text is None:
            self.diverge(
                final["seq"], REPORT_REL, f"a report saying STATUS: {final['status']}", problem
            )
            return
        m = _STATUS_LINE.search(text)
        found = m.group(1) if m else "(no STATUS line)"
        if found != final["status"]:
            self.diverge(final["seq"], f"{REPORT_REL} STATUS line", final["status"], found)
        heads = _HEAD_LINE.findall(text)
        if not heads:
            self.diverge(
                final["seq"],
                f"{REPORT_REL} ledger head line",
                "a last line `ledger head: seq=N hash=H`",
                "none",
            )
            return
        seq, digest = int(heads[-1][0]), heads[-1][1]
        self.heads.append((seq, digest, f"{REPORT_REL} ledger head", None))
        self.disk_report_head = (seq, digest)
        recorded = self.state["ledger_head"]
        if recorded is not None and (seq, digest) != (recorded["seq"], recorded["hash"]):
            self.diverge(
                final["seq"],
                f"{REPORT_REL} ledger head vs report.written",
                f"seq={recorded['seq']} hash={recorded['hash']}",
                f"seq={seq} hash={digest}",
            )

    def plan_later_anchor(self) -> None:
        """Events of this run beyond its own report's head may be covered by a later run's report.

        The first other run whose ``report.written`` comes after this run's last event and whose
        FINAL_REPORT.txt (on disk) prints a head at or beyond that event anchors them: its head
        is checked against the ledger like this run's own.
        """
        if not self.events:
            return
        last = max(ev.seq for ev in self.events)
        own = self.disk_report_head[0] if self.disk_report_head else 0
        if last <= own:
            return
        tried: set[str] = set()
        for seq, rid in self.later_reports:
            if seq <= last or rid in tried:
                continue
            tried.add(rid)
            try:
                other = self.ctx.layout.run_dir(rid)
            except UsageError:
                continue
            text, _problem = self._read_report_text(other)
            heads = _HEAD_LINE.findall(text) if text is not None else []
            if heads and int(heads[-1][0]) >= last:
                source = f"{self.ctx.layout.run_rel(rid)}/{REPORT_REL} ledger head (a later run's report)"
                self.later_anchor = {
                    "run_id": rid,
                    "seq": int(heads[-1][0]),
                    "hash": heads[-1][1],
                    "source": source,
                }
                self.heads.append((int(heads[-1][0]), heads[-1][1], source, None))
                return

    def check_heads(self, ledger: Ledger) -> None:
        """Each recorded head must be the hash of the ledger line at that seq, and every line up to
        the highest head must hash as recorded and link to the one before it."""
        wanted: dict[int, list[tuple[str, str, int | None]]] = {}
        for seq, digest, source, at in self.heads:
            wanted.setdefault(seq, []).append((digest, source, at))
        if not wanted:
            return
        found: dict[int, str] = {}
        last = 0
        top = max(wanted)
        prev = GENESIS
        broken = False
        for n, line in enumerate(ledger.iter_lines(), 1):
            try:
                obj = orjson.loads(line)
                seq, digest, linked = obj["seq"], obj["hash"], obj["prev_hash"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                seq, digest, linked = n, "", ""
            if not broken and (seq != n or linked != prev or not line_hash_ok(line)):
                broken = True
                self.diverge(
                    n,
                    f"ledger line seq {n} (at or below the head seq {top} anchored in {wanted[top][0][1]})",
                    f"seq {n}, hashed as recorded and linked to the line before",
                    "it is not",
                )
            last = n
            prev = digest
            if n in wanted:
                found[n] = digest
            if n >= top:
                break
        for seq in sorted(wanted):
            for digest, source, at in wanted[seq]:
                actual = found.get(seq)
                if actual is None:
                    self.diverge(
                        at if at is not None else seq,
                        f"ledger head recorded in {source}",
                        f"a ledger line at seq {seq} with hash {digest}",
                        f"the ledger ends at seq {last}",
                    )
                elif actual != digest:
                    self.diverge(
                        seq,
                        f"ledger head recorded in {source} (the ledger was rewritten and re-chained)",
                        f"hash {digest} at seq {seq}",
                        f"hash {actual}",
                    )
                elif self.later_anchor is not None and source == self.later_anchor["source"]:
                    self.later_anchor["ok"] = True

    def anchor_state(self) -> None:
        """Which of this run's events the report's ledger head does not cover (``state.anchor``)."""
        head = self.disk_report_head
        own = head[0] if head else 0
        finished = [ev.seq for ev in self.events if ev.event_type == "run.finished"]
        beyond: list[dict[str, Any]] = [
            {"seq": ev.seq, "event_type": ev.event_type} for ev in self.events if ev.seq > own
        ]
        after = [b for b in beyond if finished and int(b["seq"]) > finished[-1]]
        later = self.later_anchor if self.later_anchor and self.later_anchor.get("ok") else None
        self.state["anchor"] = {
            "report_head": {"seq": head[0], "hash": head[1]} if head else None,
            "beyond_report_head": beyond,
            "after_run_finished": after,
            "anchored_by_later_report": (
                {k: later[k] for k in ("run_id", "seq", "hash", "source")} if later else None
            ),
            "unanchored": [] if later else beyond,
        }


def replay(ctx: Context, run_id: str) -> Outcome:
    """Replay one run (see the module docstring); exit 0 consistent, 3 divergent or tampered."""
    validate_run_id(run_id)
    ledger = ctx.ledger
    rp = Replayer(ctx, run_id)
    ledger_rel = ctx.config.ledger_rel
    chain_ok = False
    head: dict[str, Any] = {"seq": None, "hash": None}
    try:
        verified = ledger.verify()
    except (OSError, FactoryError) as exc:
        rp.diverge(
            None,
            f"{ledger_rel} (ledger verify)",
            "a readable ledger and head file",
            _io_reason(exc),
        )
    else:
        chain_ok = verified.ok
        head = {"seq": verified.head.seq, "hash": verified.head.hash}
        if not verified.ok:
            rp.diverge(
                verified.first_bad_seq,
                "ledger chain (ledger verify)",
                "every line hashed and linked",
                verified.reason,
            )
    events: list[Event] = []
    try:
        for ev in ledger.events():
            if ev.run_id == run_id:
                events.append(ev)
            elif (
                ev.event_type == "report.written"
                and isinstance(ev.run_id, str)
                and isinstance(ev.seq, int)
            ):
                rp.later_reports.append((ev.seq, ev.run_id))
    except (OSError, FactoryError) as exc:
        rp.diverge(None, f"{ledger_rel} (ledger lines)", "valid events", _io_reason(exc))
    if not events and not rp.run_dir.is_dir():
        raise UsageError(
            f"run {run_id}: no events in {ledger_rel} and no run folder {ctx.layout.run_rel(run_id)}"
        )
    if not events:
        rp.diverge(
            None,
            "run events",
            f"events of run {run_id} in {ledger_rel}",
            "none, but the run folder exists",
        )
    rp.fold(events)
    rp.check_disk()
    try:
        rp.plan_later_anchor()
        rp.check_heads(ledger)
    except (OSError, FactoryError) as exc:
        rp.diverge(None, f"{ledger_rel} (ledger heads)", "a readable ledger", _io_reason(exc))
    rp.anchor_state()
    return _outcome(rp, chain_ok, head)


def _io_reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot read {exc.filename or 'it'} ({exc.strerror or type(exc).__name__})"
    return str(exc)


def _outcome(rp: Replayer, chain_ok: bool, head: dict[str, Any]) -> Outcome:
    ok = not rp.divergences
    state = rp.state
    data = {
        "run_id": rp.run_id,
        "ok": ok,
        "chain_verified": chain_ok,
        "ledger": head,
        "state": state,
        "timeline": rp.timeline,
        "divergences": [d.as_dict() for d in rp.divergences],
    }
    lines = [
        f"replay of {rp.run_id}: {state['events']} events (ledger {'verified' if chain_ok else 'NOT VERIFIED'}, head seq={head['seq']})"
    ]
    lines += rp.timeline
    lines.append(_summary(state))
    lines += _anchor_lines(state["anchor"])
    lines += [d.line() for d in rp.divergences]
    lines.append("REPLAY OK" if ok else f"REPLAY DIVERGED: {len(rp.divergences)} divergence(s)")
    return Outcome(
        Status.PASS if ok else Status.BLOCKED,
        data,
        "\n".join(ln.translate(_ONE_LINE) for ln in lines),
    )


def _summary(state: dict[str, Any]) -> str:
    stages = " ".join(f"{k}={v['status']}" for k, v in state["stages"].items()) or "none"
    final = state["final"]
    end = (
        f"final {final['status']} (recomputed {final['recomputed_status']})"
        if final
        else "run not finished"
    )
    v = state["validation"]
    val = (
        f"validation {v['status']} ({len(v['findings'])} finding(s), {len(v['overlaps'])} overlap(s))"
        if v
        else "no validation"
    )
    return (
        f"state: stages {stages}; {val}; {end}; {state['artifacts_checked']} artifact hash(es) checked; "
        f"{state['facts_rederived']} bundle(s) re-read for their facts"
    )


def _listing(events: list[dict[str, Any]], limit: int = 12) -> str:
    shown = ", ".join(f"seq {e['seq']} {e['event_type']}" for e in events[:limit])
    return shown + (f", … ({len(events) - limit} more)" if len(events) > limit else "")


def _anchor_lines(anchor: dict[str, Any] | None) -> list[str]:
    """What the report's ledger head covers, and what it does not, said plainly."""
    if not anchor or not anchor["beyond_report_head"]:
        return []
    head = anchor["report_head"]
    beyond = anchor["beyond_report_head"]
    after = anchor["after_run_finished"]
    later = anchor["anchored_by_later_report"]
    if head is None:
        lines = [
            f"anchor: no ledger head printed in {REPORT_REL}: no event of this run is anchored by its report"
        ]
    else:
        lines = [
            f"anchor: the ledger head in {REPORT_REL} (seq {head['seq']}) covers this run's events up to "
            f"seq {head['seq']}; beyond it: {_listing(beyond)}"
        ]
    if after:
        lines.append(
            f"anchor: {len(after)} event(s) after run.finished are NOT covered by the report's anchor: "
            f"{_listing(after)}"
        )
    if later is not None:
        lines.append(
            f"anchor: covered instead by {later['source']} at seq {later['seq']}, which matches the ledger"
        )
    elif after or head is None:
        lines.append(
            "anchor: events beyond the report's head are not anchored: removing or editing them and "
            "re-chaining the ledger and its head file is not detectable by replay; keep a copy of the "
            "ledger's last line elsewhere to anchor them"
        )
    else:
        lines.append(
            "anchor: report.written and run.finished follow the head they print by design; they are "
            f"cross-checked with {STATUS_REL} and {REPORT_REL}"
        )
    return lines
