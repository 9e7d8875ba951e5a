"""``land``: the integrated tree of a PASS run as a commit on a new branch.

The commit is the run's base commit with Z_integrator/DIFF.patch applied, the very bytes the
integration recorded (their sha256 is checked against ``report.written`` first). It is made
through a temporary index and ``git commit-tree``; the branch is created with an empty old value
(``git update-ref <ref> <commit> ''``), so an existing branch is refused, never moved. The
operator's HEAD, index and working tree are never touched. ``run.landed`` records it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from tools.codex.factory.core.ids import validate_run_id
from tools.codex.factory.core.paths import Z_DIR
from tools.codex.factory.errors import BlockedError, FactoryError, GitError, UsageError
from tools.codex.factory.infra import fsutil, gitops
from tools.codex.factory.ledger.store import Event, Filter
from tools.codex.factory.loop import pr
from tools.codex.factory.records.status import Status
from tools.codex.factory.run import clean
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.handle import RunHandle
from tools.codex.factory.run.outcome import Outcome

DIFF_REL = f"{Z_DIR}/DIFF.patch"
MAX_PATCH = 512 * 1024 * 1024  # as a crank reads its integrated patches
LANDED = "run.landed"
BRANCH_PREFIX = "factory/result"


@dataclass(frozen=True)
class LandRequest:
    """What the operator asked: the run, the branch (default ``factory/result/<RUN_ID>``), the
    commit message (default ``factory: <RUN_ID>``) and whether to open a pull request."""

    run_id: str
    branch: str | None = None
    message: str | None = None
    pr: bool = False


def integrated_patch(ctx: Context, run: RunHandle) -> tuple[bytes, str]:
    """Z's DIFF.patch and its sha256, refused unless its bytes are the ones the integration
    recorded in its last ``report.written`` (a patch edited since is never committed)."""
    written = ctx.ledger.select(Filter(run_id=run.run_id, event_type="report.written"), 1)
    recorded = written[-1].payload.get("files", {}).get(DIFF_REL) if written else None
    if recorded is None:
        raise BlockedError(
            f"run {run.run_id} has no integrated tree: run `factory integrate` first"
        )
    data = fsutil.read_file(run.run_dir / DIFF_REL, DIFF_REL, limit=MAX_PATCH)
    sha = hashlib.sha256(data).hexdigest()
    if sha != recorded:
        raise BlockedError(f"{run.run_id}/{DIFF_REL} changed since the integration wrote it")
    return data, sha


def integrated_commit(ctx: Context, run: RunHandle, message: str) -> str:
    """The run's integrated tree as a commit object on no branch: base + the recorded patch."""
    data, _sha = integrated_patch(ctx, run)
    return gitops.commit_patch(ctx.repo, run.base_commit, data, message, _when(ctx))


def _when(ctx: Context) -> str:
    return f"{int(ctx.clock.now().timestamp())} +0000"


def _last(events: list[Event], event_type: str) -> Event | None:
    found = [e for e in events if e.event_type == event_type]
    return found[-1] if found else None


def _check_landable(run_id: str, events: list[Event]) -> None:
    """Only a run whose last verdict is PASS, landed once: BlockedError (exit 3) otherwise."""
    landed = _last(events, LANDED)
    if landed is not None:
        p = landed.payload
        raise BlockedError(
            f"run {run_id} was already landed on branch {p.get('branch')} (commit "
            f"{str(p.get('commit'))[:12]}): `git switch {p.get('branch')}`"
        )
    finished = _last(events, "run.finished")
    status = finished.payload.get("status") if finished is not None else None
    if status != "PASS":
        said = f"its status is {status}" if status else "it has not finished"
        raise BlockedError(f"run {run_id} cannot be landed: {said}; only a PASS run lands")
    assert finished is not None
    reopened = [e for e in events if e.seq > finished.seq and e.event_type == "stage.started"]
    if reopened:
        raise BlockedError(
            f"run {run_id} cannot be landed: it was reopened after its PASS ({reopened[0].stage} "
            f"at seq {reopened[0].seq}); integrate it again first"
        )


def _branch(ctx: Context, run_id: str, wanted: str | None) -> str:
    if wanted is not None and not wanted.strip():
        raise UsageError("branch '': an empty name; give a branch name, or none for the default")
    branch = wanted or f"{BRANCH_PREFIX}/{run_id}"
    if not gitops.valid_branch(branch):
        raise UsageError(f"branch {branch!r}: not a valid git branch name")
    if branch.startswith("refs/"):
        raise UsageError(f"branch {branch!r}: a full ref name; give the branch's own name")
    if gitops.branch_exists(ctx.repo, branch):
        raise BlockedError(
            f"branch {branch} exists already; land never moves an existing branch: "
            "pass another branch name, or delete that branch first"
        )
    _refuse_taken_name(ctx, branch)
    return branch


def _refuse_taken_name(ctx: Context, branch: str) -> None:
    """A name git already reads as something (a tag, a ref, a commit's short ID) would make the
    printed `git merge NAME` take that instead of the new branch: BlockedError."""
    try:
        taken = gitops.resolve_commit(ctx.repo, branch)
    except UsageError:
        return  # names nothing yet
    raise BlockedError(
        f"branch {branch}: git reads that name as commit {taken[:12]} already (`git merge "
        f"{branch}` would take that, not the new branch): pass another branch name"
    )


def _create(ctx: Context, branch: str, commit: str, run_id: str) -> None:
    """Create the branch, or refuse in one line with git's reason (a branch made since the
    check, or one named like a folder of the new name): nothing is moved or made."""
    try:
        gitops.create_branch(ctx.repo, branch, commit, f"factory land {run_id}")
    except GitError as exc:
        lines = [ln.strip() for ln in exc.stderr.splitlines() if ln.strip()]
        reason = lines[-1].removeprefix("fatal: ") if lines else f"git exited with rc={exc.rc}"
        raise BlockedError(
            f"branch {branch} cannot be created ({reason[:300]}); land never moves or replaces "
            "a branch: pass another branch name"
        ) from None


def next_commands(ctx: Context, base: str, branch: str) -> list[str]:
    """What the operator types next: a fast-forward while HEAD is still the base, else a merge."""
    try:
        head = gitops.head_commit(ctx.repo)
    except FactoryError:
        head = None
    if head == base:
        return [f"git switch {branch}", f"git merge --ff-only {branch}"]
    return [f"git merge {branch}"]


def land(ctx: Context, req: LandRequest) -> Outcome:
    """Commit the run's integrated tree on a new branch, record ``run.landed``, then remove the
    run's kept worker branches (each only if its tip is the one recorded)."""
    run_id = validate_run_id(req.run_id)
    with RunHandle.open(ctx, run_id) as run:
        _check_landable(run_id, ctx.ledger.run_events(run_id))
        branch = _branch(ctx, run_id, req.branch)
        data, sha = integrated_patch(ctx, run)
        message = req.message or f"factory: {run_id}"
        commit = gitops.commit_patch(ctx.repo, run.base_commit, data, message, _when(ctx))
        _create(ctx, branch, commit, run_id)
        try:
            run.recorder.emit(
                LANDED, "land", "operator", branch=branch, commit=commit,
                base_commit=run.base_commit, diff_sha256=sha,
                tree=gitops.tree_of(ctx.repo, commit),
            )  # fmt: skip
        except BaseException:
            gitops.delete_branch_at(ctx.repo, branch, commit)  # never a branch the ledger lacks
            raise
        messages = clean.remove_kept_branches(ctx, run.recorder, run.manifest, "landed")
    nxt = next_commands(ctx, run.base_commit, branch)
    out: dict[str, Any] = {
        "run_id": run_id,
        "status": "PASS",
        "branch": branch,
        "commit": commit,
        "base_commit": run.base_commit,
        "next": nxt,
    }
    outcome = Outcome(Status.PASS, out, view="land", messages=messages)
    if req.pr:
        report = ctx.layout.report_path(run_id)
        outcome.messages += pr.open_pr(ctx.repo, branch, commit, message, report)
    return outcome
