"""Typed records of validation and integration: the JSON the pure decisions consume and produce.

They are what the ledger records (``bundle.facts``, ``validation.decided``, ``patch.applied``,
``check.finished``, ``run.finished``), so they stay plain JSON: TypedDicts, not classes.
Keys added after the first release are ``NotRequired``: facts and policies recorded by earlier
releases lack them and are judged as those releases judged them.
"""

from __future__ import annotations

import sys
from typing import Literal, TypedDict

if sys.version_info >= (3, 11):
    from typing import NotRequired
else:  # pragma: no cover - Python 3.10
    from typing_extensions import NotRequired

Verdict = Literal["PASS", "BLOCKED"]
Severity = Literal["block", "warn"]


class Scope(TypedDict):
    allow: list[str]
    deny: list[str]
    shared: list[str]


class PlannedScope(TypedDict):
    """A worker's scope as the plan (the run manifest) fixes it."""

    allow: list[str]
    deny: list[str]
    shared: list[str]
    special: NotRequired[list[str]]


class BundleFacts(TypedDict):
    """Everything bundle-validate read from one bundle: the input of the judgement."""

    worker: str
    missing: list[str]
    symlinks: list[str]
    json_errors: list[list[str]]  # [file, message]
    schema_errors: list[list[str]]  # [file, where, message]
    status: str | None
    status_reason: str
    ids: dict[str, str]
    files_changed: list[str]
    touched: list[str]
    added: list[str]
    patch_error: str | None
    section_hashes: dict[str, str]
    scope: Scope | None
    depends_on: list[str]
    log_problems: list[list[str]]  # [log path, rule, message]
    base_case_variants: dict[str, str]
    bundle_hash: str
    run_id: NotRequired[str | None]
    # version 2
    version: NotRequired[int]
    files_sha256: NotRequired[dict[str, str]]
    apply_sha256: NotRequired[str | None]
    eol_normalised: NotRequired[bool]
    limit_problems: NotRequired[list[list[str]]]  # [where, rule, message]
    deleted: NotRequired[list[str]]
    base_dir_clashes: NotRequired[dict[str, str]]
    links: NotRequired[list[list[str]]]  # [path, target]
    gitlinks: NotRequired[list[str]]
    binary_checks: NotRequired[list[list[str]]]  # [path, ok|mismatch|unverifiable, why]
    patch_disagreements: NotRequired[list[str]]
    # version 3
    base_links: NotRequired[list[list[str]]]  # [path, target] of the base's symlinks
    stray_text: NotRequired[str]  # text outside DIFF.patch's 'diff --git' sections
    base_short_aliases: NotRequired[dict[str, str]]  # path -> base path it may be (8.3 name)


ReviewSeverity = Literal["critical", "warning", "off"]


class ReviewSettings(TypedDict):
    """What Gate 0 (``core.review``) reviews by: the run's ``review.*`` config and the files
    its required checks run (recorded in the policy, version 7)."""

    enabled: bool
    severity: dict[str, ReviewSeverity]
    test_globs: list[str]
    skip_patterns: list[str]
    check_files: list[str]


class ReviewFinding(TypedDict):
    """One Gate 0 observation on a worker's patch; ``line`` 0 is the whole file."""

    worker: str
    path: str
    line: int
    rule: str
    severity: Literal["critical", "warning"]
    message: str


class AgentPolicy(TypedDict):
    """The reviewer agent (config ``review.agent``) as validation's policy records it."""

    preset: str
    argv: list[str]
    prompt_via: str
    timeout_s: float


class AgentFinding(TypedDict):
    """One finding of the reviewer agent's verdict (``schemas/review_verdict.schema.json``)."""

    severity: Literal["critical", "warning"]
    path: str
    line: int
    rule: str
    text: str


class AgentAttempt(TypedDict):
    """One attempt of the reviewer agent (a ``review.agent`` payload): its inputs and the
    judgement of its answer, ``findings`` (valid) or ``error``."""

    worker: str
    attempt: int
    patch_sha256: str
    prompt_sha256: str
    rc: int | None
    timed_out: bool
    start_error: str
    answer_sha256: str | None
    findings: list[AgentFinding] | None
    error: str | None
    stderr_tail: NotRequired[str]


class Policy(TypedDict):
    """Everything validation judges by (recorded in ``validation.decided``)."""

    run_id: str
    protected_paths: list[str]
    allow_identical_patch_overlap: bool
    case_collisions: Literal["block", "warn"]
    scopes: dict[str, PlannedScope]
    version: NotRequired[int]
    portable_names: NotRequired[Literal["block", "warn"]]
    limits: NotRequired[dict[str, int]]
    # version 3
    attributes: NotRequired[Literal["base", "candidate"]]
    # version 7
    review: NotRequired[ReviewSettings]
    # version 8: the reviewer agent's command, or None
    review_agent: NotRequired[AgentPolicy | None]


class Finding(TypedDict):
    worker: str
    path: str
    rule: str
    message: str
    severity: Severity


class Overlap(TypedDict):
    path: str
    workers: list[str]
    resolution: Literal["shared", "identical", "blocked"]


class Judgement(TypedDict):
    """The outcome of :func:`core.validation.evaluate`."""

    status: Verdict
    verdicts: dict[str, Verdict]
    findings: list[Finding]
    warnings: list[Finding]
    overlaps: list[Overlap]
    touched: dict[str, list[str]]


class StageRow(TypedDict):
    stage: str
    status: str
    reason: str


class AppliedPatch(TypedDict):
    """What ``patch.applied`` records that the integrate decision reads."""

    worker: str
    ok: bool
    files: list[str]


class CheckResult(TypedDict):
    """What ``check.finished`` records that the check decision reads."""

    name: str
    required: bool
    rc: int | None
    timed_out: bool


class Violation(TypedDict):
    path: str
    reason: str
