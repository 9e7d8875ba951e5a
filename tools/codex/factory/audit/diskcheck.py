"""The folded run compared with the files on disk.

The sha256 of every artifact recorded at write time (``artifacts.written``, ``bundle.created``,
``bundle.facts``' bundle hash, ``validation.decided``, ``check.finished``, ``report.written``
and the attestation files it vouches for), Z's STATUS.json and FINAL_REPORT.txt,
VALIDATION.json and the workers' STATUS.json must say what the events say.

Recorded inputs are re-derived where the evidence is still on disk: for every ``bundle.facts``
event whose bundle folder still hashes to the recorded ``bundle_hash``, the facts are gathered
again from the bundle (:func:`facts.gather_facts`, the base tree from the run's base commit)
and must equal the recorded ones, so forged facts (a widened scope, a hidden touched path)
cannot pass even when the decisions, VALIDATION.json and its hash were forged to match and the
ledger was re-chained.

Nothing read is trusted before it is checked: every file read for its content is parsed and
checked against its schema first; a malformed, empty, missing or unreadable file (a folder in
its place) is a one-line divergence naming the file and the rule, never an internal error.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tools.codex.factory.audit.describe import short
from tools.codex.factory.audit.fold import (
    SUM_FILES,
    AnchoredHead,
    Divergence,
    Fold,
    RunDocs,
    Snapshot,
    SumFile,
    divergence,
)
from tools.codex.factory.core import decisions, isolation, review, testfailures
from tools.codex.factory.core.paths import (
    ATTEST_DIR,
    LOGS_DIR,
    MANIFEST,
    REPORT_HTML,
    VALIDATION,
    Z_DIR,
    worker_dirname,
)
from tools.codex.factory.core.reviewagent import MAX_ANSWER_BYTES
from tools.codex.factory.core.testfailures import TAIL_BYTES
from tools.codex.factory.errors import FactoryError, UsageError
from tools.codex.factory.infra import fsutil, gitops, jsonio, schemas
from tools.codex.factory.infra.writer import sha256_file, sha256_stream_tail
from tools.codex.factory.run import reviewagent, snapshots
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.facts import (
    V1_KEYS,
    V3_KEYS,
    V4_KEYS,
    BaseTree,
    GitSide,
    Limits,
    bundle_hash,
    file_hashes,
    gather_facts,
)
from tools.codex.factory.run.validate import (
    POLICY_VERSION,
    base_tree,
    limits,
    parse_patches,
    preimage_hashes,
    review_inputs,
    review_settings,
)

REPORT_REL = f"{Z_DIR}/FINAL_REPORT.txt"
STATUS_REL = f"{Z_DIR}/STATUS.json"
_HEAD_LINE = re.compile(r"^ledger head: seq=(\d+) hash=([0-9a-f]{64})\s*$", re.M)
_STATUS_LINE = re.compile(r"^STATUS:\s+(\S+)\s*$", re.M)
_SUM_LINE = re.compile(r"^([0-9a-f]{64})  (.+)$")
# The keys of VALIDATION.json replay recomputes from the recorded facts.
_VALIDATION_KEYS = (
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
)


_CHECK_BASICS = ("name", "required", "rc", "timed_out")
# A STATUS.json check entry as replay compares it: the basics and what the check said.
_STATUS_CHECK_KEYS = (*_CHECK_BASICS, "failing_tests", "output_tail")


def _isolation_keys(
    found: isolation.Result | None,
    order: list[str],
    probes: list[isolation.Probe],
    tests: list[dict[str, list[str]]],
) -> dict[str, object]:
    """STATUS.json's isolation keys as replay recomputes them (none without an isolation)."""
    if found is None:
        return dict.fromkeys(sorted(isolation.STATUS_KEYS))
    return {
        "culprits": isolation.culprit_tests(found["culprits"], probes, tests),
        "interactions": found["interactions"],
        "flaky": found["flaky"],
        "base_failing": found["base"],
        "isolation_runs": found["runs"],
        "isolation_exhausted": found["exhausted"],
        "worker_verdicts": decisions.worker_verdicts(order, found),
    }


# -- reading the run folder ---------------------------------------------------------------------
def read_doc(run_dir: Path, rel: str, schema: str) -> tuple[Any, str | None]:
    """Read a JSON artifact and check it against ``schemas/<schema>.schema.json``.

    Returns (document, None) or (None, a one-line reason naming the rule it broke).
    """
    try:
        doc = jsonio.read_json(run_dir / rel, rel)
    except UsageError as exc:
        return None, str(exc)
    problems = schemas.errors(schema, doc)
    if problems:
        where, msg = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return None, f"{rel}: breaks schemas/{schema}.schema.json at {where}: {msg}{more}"
    return doc, None


def _read_sums(run_dir: Path) -> dict[str, SumFile]:
    """The attestation sum files that are regular, readable files (the others vouch for nothing;
    the artifact check names them)."""
    out: dict[str, SumFile] = {}
    for rel in SUM_FILES:
        path = run_dir / rel
        try:
            if not path.is_file():
                continue
            data = path.read_bytes()
        except OSError:
            continue
        listed: dict[str, str] = {}
        for line in data.decode("utf-8", "replace").splitlines():
            m = _SUM_LINE.match(line)
            if m:
                listed[m.group(2)] = m.group(1)
        out[rel] = SumFile(hashlib.sha256(data).hexdigest(), listed)
    return out


def _read_check_logs(run_dir: Path) -> dict[str, tuple[str, bytes]]:
    """Z's check logs that are regular files: the sha256 of each and, from the same read, the
    bytes a summary reads (a log's last TAIL_BYTES, a JUnit XML up to its limit)."""
    out: dict[str, tuple[str, bytes]] = {}
    logs = run_dir / Z_DIR / LOGS_DIR
    try:
        names = sorted(e.name for e in os.scandir(logs) if e.name.startswith("check-"))
    except OSError:
        return out
    try:  # culprit isolation's probe logs: their failing tests are recomputed too
        probes = sorted(
            f"isolation/{e.name}"
            for e in os.scandir(logs / "isolation")
            if e.name.startswith("probe-") and e.name.endswith((".log", ".junit.xml"))
        )
    except OSError:
        probes = []
    for name in [*names, *probes]:
        keep = testfailures.JUNIT_MAX_BYTES if name.endswith(".junit.xml") else TAIL_BYTES
        if not name.endswith((".log", ".junit.xml")):
            continue
        try:
            fd = fsutil.open_regular(logs / name, os.O_RDONLY)
        except OSError:
            continue  # a link or a FIFO vouches for nothing (the artifact check names it)
        with os.fdopen(fd, "rb") as fh:
            out[f"{Z_DIR}/{LOGS_DIR}/{name}"] = sha256_stream_tail(fh, keep)
    return out


def read_docs(run_dir: Path, run_id: str) -> RunDocs:
    """What the fold needs from the run folder: RUN_MANIFEST.json once checked against its
    schema and this run (or why it is unusable), the attestation sum files and the check
    logs (hashed, with the bytes their summary reads)."""
    doc, problem = read_doc(run_dir, MANIFEST, "run_manifest")
    if problem is None and doc["run_id"] != run_id:
        problem = f"{MANIFEST}: names run {doc['run_id']!r}, not {run_id!r}"
    manifest = doc if problem is None else None
    return RunDocs(manifest, problem, _read_sums(run_dir), _read_check_logs(run_dir))


def read_report_text(run_dir: Path) -> tuple[str | None, str]:
    """FINAL_REPORT.txt of a run folder as text, or (None, why it cannot be read)."""
    path = run_dir / REPORT_REL
    if path.is_dir():
        return None, "a folder, not a file"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, "the file is missing"
    except OSError as exc:
        return None, f"cannot read it ({exc.strerror or type(exc).__name__})"
    return data.decode("utf-8", "replace"), ""


def head_lines(text: str | None) -> list[tuple[str, str]]:
    """The (seq, hash) of every ``ledger head:`` line of a report; the last one is its head."""
    return _HEAD_LINE.findall(text) if text is not None else []


def printed_head(text: str | None) -> tuple[int, str] | None:
    """The ledger head a report prints on its last ``ledger head:`` line."""
    heads = head_lines(text)
    return (int(heads[-1][0]), heads[-1][1]) if heads else None


# -- the comparisons ----------------------------------------------------------------------------
class DiskCheck:
    """The comparisons of one folded run with its run folder."""

    def __init__(self, ctx: Context, run_dir: Path, folded: Fold, docs: RunDocs) -> None:
        self.ctx = ctx
        self.run_dir = run_dir
        self.folded = folded
        self.docs = docs
        self.divergences: list[Divergence] = []
        self.heads: list[AnchoredHead] = []  # printed in Z's STATUS.json and FINAL_REPORT.txt
        self.report_head: tuple[int, str] | None = None  # the head line of FINAL_REPORT.txt
        self.artifacts_checked = 0
        self.facts_rederived = 0

    def diverge(self, seq: int | None, what: str, expected: object, found: object) -> None:
        self.divergences.append(divergence(seq, what, expected, found))

    def run(self) -> None:
        steps = [
            self._check_manifest,
            self._check_files,
            self._check_validation_doc,
            self._check_worker_status,
            self._check_facts,
            self._check_unrecorded_html,
            self._check_reviews,
            self._check_agent_answers,
        ]
        if self.folded.state.final is not None and self.folded.last_seg.report is not None:
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

    def _limits(self) -> Limits:
        """The run's limits (its manifest's config; defaults when it is unusable)."""
        manifest = self.docs.manifest
        if manifest is None:
            return Limits()
        try:
            return limits(manifest)
        except (KeyError, TypeError, ValueError):
            return Limits()

    def _check_manifest(self) -> None:
        state = self.folded.state
        if state.plan_hash is None:
            return
        manifest = self.docs.manifest
        if manifest is None:
            self.diverge(
                None,
                MANIFEST,
                "the run manifest launch wrote",
                self.docs.manifest_problem or "unreadable",
            )
            return
        digest = hashlib.sha256(jsonio.canonical(manifest.get("plan"))).hexdigest()
        if digest != state.plan_hash:
            self.diverge(
                None,
                f"{MANIFEST} plan (sha256 of the canonical plan vs run.started plan_hash)",
                state.plan_hash,
                digest,
            )
        for key, value in (("base_commit", state.base_commit), ("workers", state.workers)):
            if manifest.get(key) != value:
                self.diverge(None, f"{MANIFEST} {key} vs run.started", value, manifest.get(key))

    def _check_files(self) -> None:
        checked = 0
        for rel, rec in sorted(self.folded.files.items()):
            checked += 1
            self._compare(rel, rec.sha, rec.seq, rec.source)
        for wdir, snap in sorted(self.folded.snaps.items()):
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
        if self.folded.z_listing is not None:
            listed, seq = self.folded.z_listing
            self._extra_files(
                self.run_dir / Z_DIR, Z_DIR, listed, seq, f"{ATTEST_DIR}/report.sha256"
            )
        self.artifacts_checked = checked

    def _name_changed(self, snap: Snapshot) -> str:
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
        v = self.folded.state.validation
        if v is None:
            return
        doc, problem = read_doc(self.run_dir, VALIDATION, "validation")
        if problem is not None:
            self.diverge(v["seq"], VALIDATION, "the document validation.decided wrote", problem)
            return
        recomputed: Mapping[str, object] = v
        for key in _VALIDATION_KEYS:
            if key not in recomputed and key not in doc:
                continue  # validated by an earlier release
            if doc.get(key) != recomputed.get(key):
                self.diverge(
                    v["seq"],
                    f"{VALIDATION} {key} (recomputed from bundle.facts)",
                    recomputed.get(key),
                    doc.get(key),
                )

    def _check_worker_status(self) -> None:
        for w, (facts, seq) in sorted(self.folded.facts.items()):
            rel = f"{worker_dirname(w)}/STATUS.json"
            if facts["status"] is None:
                continue  # it was missing or malformed at validation: the facts say so
            doc, problem = read_doc(self.run_dir, rel, "worker_status")
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
        for w, recorded, seq in self.folded.fact_events:
            wdir = worker_dirname(w)
            if wdir not in now:
                now[wdir] = bundle_hash(self.run_dir / wdir, self._limits())
            if recorded["bundle_hash"] != now[wdir]:
                continue  # the bundle changed since: a later record or the bundle-hash check covers it
            if base_lower is None:
                base = self.folded.state.base_commit
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
                        short(str(exc), 300),
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
                self.facts_rederived += 1
            fresh = derived[key]
            # A fact recorded by an earlier release is compared on the keys it had.
            names = set(fresh) | set(recorded) if "version" in recorded else set(V1_KEYS)
            if recorded.get("version") in (2, 3):
                names -= {"version", *V4_KEYS}
            if recorded.get("version") == 2:
                names -= set(V3_KEYS)
            old: Mapping[str, object] = recorded
            for name in sorted(names):
                if fresh.get(name) != old.get(name):
                    self.diverge(
                        seq,
                        f"recorded facts for {w} differ from the bundle {wdir}/ "
                        f"(re-derived by facts.gather_facts): {name}",
                        fresh.get(name),
                        old.get(name),
                    )

    def _check_reviews(self) -> None:
        """Recompute every Gate 0 ``review.findings`` with :func:`review.review` from the
        patch snapshot it names (hash-verified) and the base commit's files; the recorded
        base-content hashes and findings must be what that gives."""
        manifest, base = self.docs.manifest, self.folded.state.base_commit
        if not self.folded.review_events or manifest is None or not isinstance(base, str):
            return
        try:
            settings = {v: review_settings(manifest, v) for v in self._review_versions()}
        except (KeyError, TypeError):
            return  # the manifest check reports it
        bounds = self._limits()
        events = self.folded.review_events
        patches: dict[str, bytes] = {}
        for w, recorded, seq in events:
            try:
                patches[str(seq)] = snapshots.get(
                    self.run_dir, recorded["patch_sha256"], bounds.max_file_bytes
                )
            except FactoryError as exc:
                self.diverge(
                    seq,
                    f"review.findings for worker {w}",
                    "its patch snapshot",
                    short(str(exc), 300),
                )
        try:
            parsed = parse_patches(patches, bounds)
            inputs = review_inputs(self.ctx, base, parsed, settings[POLICY_VERSION], bounds)
        except FactoryError as exc:
            self.diverge(None, "review.findings", "the base commit's files", short(str(exc), 300))
            return
        for w, recorded, seq in events:
            what = f"review.findings for worker {w}"
            if str(seq) not in patches:
                continue
            if str(seq) not in inputs:
                self.diverge(seq, what, "a patch snapshot that parses", "it does not")
                continue
            patch, pre = inputs[str(seq)]
            hashes = preimage_hashes(pre)
            if hashes != recorded["preimages"]:
                self.diverge(
                    seq, f"{what}: preimages (read again from the base commit)", hashes,
                    recorded["preimages"],
                )  # fmt: skip
            fresh = review.review(w, patch, pre, settings[self._review_version(seq, recorded)])
            if fresh != recorded["findings"]:
                self.diverge(
                    seq,
                    f"{what}: findings (recomputed by review.review from the patch snapshot "
                    "and the base commit)",
                    fresh,
                    recorded["findings"],
                )

    def _review_version(self, seq: int, recorded: Mapping[str, Any]) -> int:
        """The policy version a review.findings is recomputed by: the validation.decided's
        after it; with none (the run stopped before its verdict), the version it records
        (none: recorded before review.findings named it, when no rule was newer than 8)."""
        version = self.folded.review_versions.get(seq, recorded.get("policy_version", 8))
        return version if isinstance(version, int) and not isinstance(version, bool) else 1

    def _review_versions(self) -> set[int]:
        events = self.folded.review_events
        return {POLICY_VERSION} | {self._review_version(seq, p) for _, p, seq in events}

    def _check_agent_answers(self) -> None:
        """Re-judge every ``review.agent`` attempt from its recorded inputs: the answer read
        back from the snapshot store (hash-verified) and how its process ended must give the
        recorded findings or error, and the patch snapshot must give the recorded prompt (the
        agent is not run again)."""
        manifest = self.docs.manifest
        if not self.folded.agent_events or manifest is None:
            return
        bounds = self._limits()
        for w, recorded, seq in self.folded.agent_events:
            what = f"review.agent for worker {w} (attempt {recorded.get('attempt')})"
            answer: bytes | None = None
            digest = recorded["answer_sha256"]
            try:
                if digest is not None:
                    answer = snapshots.get(self.run_dir, digest, MAX_ANSWER_BYTES + 1)
                patch = snapshots.get(self.run_dir, recorded["patch_sha256"], bounds.max_file_bytes)
            except FactoryError as exc:
                self.diverge(seq, what, "its answer and patch snapshots", short(str(exc), 300))
                continue
            findings, error = reviewagent.judge(
                recorded["rc"], recorded["timed_out"], recorded["start_error"], answer
            )
            if (findings, error) != (recorded["findings"], recorded["error"]):
                self.diverge(
                    seq,
                    f"{what}: its judgement (recomputed from the recorded answer)",
                    {"findings": findings, "error": error},
                    {"findings": recorded["findings"], "error": recorded["error"]},
                )
            parsed = parse_patches({"p": patch}, bounds)
            if "p" in parsed:
                prompt, _ = reviewagent.prompt_for(manifest, w, parsed["p"])
                fresh = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
                if fresh != recorded["prompt_sha256"]:
                    self.diverge(
                        seq,
                        f"{what}: prompt_sha256 (rebuilt from the patch snapshot)",
                        fresh,
                        recorded["prompt_sha256"],
                    )

    def _check_status_doc(self) -> None:
        state = self.folded.state
        final = state.final
        seg = self.folded.last_seg
        assert final is not None  # run() checks it first
        doc, problem = read_doc(self.run_dir, STATUS_REL, "integrator_status")
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
            and not state.policy_violations
        )
        expected: dict[str, object] = {
            "status": final["status"],
            "reasons": final["reasons"],
            "stages": final["stages"],
            "policy_violations": state.policy_violations,
        }
        if returned or seg.merge is None:
            merged = seg.merge is not None and not seg.merge["reason"]
            expected["checks"] = (
                [
                    {
                        "name": c["name"],
                        "required": c["required"],
                        "rc": c["rc"],
                        "timed_out": c["timed_out"],
                        **spec["said"],
                    }
                    for c, spec in zip(seg.checks, seg.check_specs, strict=True)
                ]
                if merged
                else []
            )
            expected["merge_order"] = seg.merge["order"] if merged and seg.merge else []
            if seg.merge is not None and "covers" in doc:  # STATUS.json of this release
                covers = sorted(seg.merge["depends_on"])
                expected["covers"] = covers
                expected["left_out"] = decisions.left_out(state.workers, covers)
            expected["applied"] = [x["worker"] for x in seg.patches if x["ok"]] if merged else []
            if seg.found is not None or not (seg.probes or seg.isolation):  # else unrecomputable
                expected.update(
                    _isolation_keys(
                        seg.found,
                        seg.merge["order"] if seg.merge else [],
                        [probe for _, probe in seg.probes],
                        seg.probe_tests,
                    )
                )
        found_checks = [
            {k: c.get(k) for k in _STATUS_CHECK_KEYS if k in c or k in _CHECK_BASICS}
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
            self.heads.append(
                AnchoredHead(head["seq"], head["hash"], f"{STATUS_REL} ledger_head", None)
            )

    def _check_report(self) -> None:
        final = self.folded.state.final
        assert final is not None  # run() checks it first
        text, problem = read_report_text(self.run_dir)
        if text is None:
            self.diverge(
                final["seq"], REPORT_REL, f"a report saying STATUS: {final['status']}", problem
            )
            return
        m = _STATUS_LINE.search(text)
        found = m.group(1) if m else "(no STATUS line)"
        if found != final["status"]:
            self.diverge(final["seq"], f"{REPORT_REL} STATUS line", final["status"], found)
        head = printed_head(text)
        if head is None:
            self.diverge(
                final["seq"],
                f"{REPORT_REL} ledger head line",
                "a last line `ledger head: seq=N hash=H`",
                "none",
            )
            return
        seq, digest = head
        self.heads.append(AnchoredHead(seq, digest, f"{REPORT_REL} ledger head", None))
        self.report_head = head
        recorded = self.folded.state.ledger_head
        if recorded is not None and (seq, digest) != (recorded["seq"], recorded["hash"]):
            self.diverge(
                final["seq"],
                f"{REPORT_REL} ledger head vs report.written",
                f"seq={recorded['seq']} hash={recorded['hash']}",
                f"seq={seq} hash={digest}",
            )

    def _check_unrecorded_html(self) -> None:
        """A REPORT.html on disk that no report.html.written records (a recorded one is
        compared with its hash among the recorded files)."""
        if REPORT_HTML in self.folded.files:
            return
        path = self.run_dir / REPORT_HTML
        if path.exists() or path.is_symlink():
            self.diverge(
                None,
                f"{REPORT_HTML} (no report.html.written event records it)",
                "a report.html.written event with its sha256",
                "none in the ledger: write it with `factory report --html`",
            )

    def _check_unrecorded_report(self) -> None:
        """A FINAL_REPORT.txt on disk that no report.written (followed by run.finished) records."""
        if any(ev.event_type == "report.written" for ev in self.folded.events):
            return  # recorded (a report.written without run.finished is reported by the fold)
        path = self.run_dir / REPORT_REL
        if not (path.exists() or path.is_symlink()):
            return
        text, problem = read_report_text(self.run_dir)
        heads = head_lines(text)
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
        head = printed_head(text)
        if head:
            self.heads.append(AnchoredHead(head[0], head[1], f"{REPORT_REL} ledger head", None))
            self.report_head = head


def check(ctx: Context, run_dir: Path, folded: Fold, docs: RunDocs) -> DiskCheck:
    """Compare the folded run with its run folder; see the module docstring."""
    disk = DiskCheck(ctx, run_dir, folded, docs)
    disk.run()
    return disk
