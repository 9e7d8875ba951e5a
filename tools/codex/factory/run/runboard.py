"""PROMPT.md for each worker and RUNBOARD.md for the operator.

PROMPT.md is deterministic (no absolute paths, no host or user names): it sits in the bundle
folder, whose hashes reach VALIDATION.json. RUNBOARD.md is the operator's page at the run root:
it names the worktree folders (absolute, unavoidably) and is never hashed into a decision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.codex.factory.core.paths import RUNBOARD, worker_dirname
from tools.codex.factory.errors import FactoryError, UnreadableError
from tools.codex.factory.infra import gitops, jsonio
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.run import agents, worktrees
from tools.codex.factory.run.worktrees import DONE_MARKER, NOTES_DIR, PROMPT

UNREADABLE = "UNREADABLE"  # a STATUS.json that is there but cannot be read (see read_status)


def _globs(items: list[str]) -> str:
    return ", ".join(f"`{g}`" for g in items) if items else "(none)"


def render_prompt(
    *,
    run_id: str,
    worker: dict[str, Any],
    branch: str,
    base_ref: str,
    base_commit: str,
    holdout: list[str],
    protected: list[str],
    headless: bool,
    crank: dict[str, Any] | None = None,
) -> str:
    wid = worker["id"]
    example = {
        "schema_version": 1,
        "worker": wid,
        "depends_on": [],
        "notes": "what the integrator should know",
        "next_steps": [],
    }
    lines = [
        f"# Worker {wid} of run {run_id}",
        "",
        "You are one of several coding workers changing this repository in parallel. Each worker has",
        "its own git worktree and its own scope. When you are done, the factory collects your change",
        "from this worktree, checks it against your scope lock and integrates it with the others.",
        "",
        "## Your task",
        "",
        worker.get("task") or "(no task text in the plan: ask the operator)",
        "",
        "## Scope lock",
        "",
        f"- You may create, change, rename or delete only paths matching: {_globs(worker['allow'])}.",
        f"- Never touch paths matching: {_globs(worker['deny'])}.",
        f"- Paths you share with other workers (overlaps allowed there): {_globs(worker['shared'])}.",
        f"- Protected paths no worker may touch: {_globs(protected)}.",
        "- Globs are anchored at the repository root; `dir/**` is everything under `dir/`.",
        "- Any change outside your allowed paths blocks the whole run.",
        "",
        "## Rules",
        "",
        f"- Work only in this worktree (your current directory): branch `{branch}`, based on `{base_ref}`",
        f"  (commit `{base_commit}`).",
        f"- Held-out paths ({_globs(holdout)}) are absent from this checkout on purpose. Do not try to",
        "  read them (from git history or anywhere else) and do not create files there.",
        "- Committing is optional: committed and uncommitted changes are both collected, new, deleted,",
        "  renamed, binary and mode-changed files included (git-ignored files are not).",
        "- Do not change files outside this worktree, git configuration, other branches or worktrees.",
        "- Keep the change focused on your task.",
        "",
        "## When you finish",
        "",
        f"Leave your notes in the reserved folder `{NOTES_DIR}/` at the root of this worktree (git ignores",
        "it and it is never part of your change):",
        "",
        f"- `{NOTES_DIR}/SUMMARY.md`: what you changed and why.",
        f"- `{NOTES_DIR}/SUGGESTIONS.md`: follow-ups for the operator or the other workers.",
        f"- `{NOTES_DIR}/HANDOFF_NOTE.json`: list under `depends_on` the workers whose changes must be",
        "  merged before yours, in the handoff note's JSON form (`factory schema handoff_note` prints",
        "  its schema), for example:",
        "",
        "```json",
        jsonio.pretty(example).decode().rstrip("\n"),
        "```",
        "",
    ]
    if crank is not None:
        lines += _crank_lines(run_id, crank, wid)
    if headless:
        lines += [
            "Your work is collected when your process exits; exit non-zero if you could not finish.",
            "",
        ]
    else:
        lines += [
            f"When you are done, create the empty file `{NOTES_DIR}/{DONE_MARKER}`, then tell the operator, who",
            f"runs `factory bundle-collect --run-id {run_id} --workers {wid}`.",
            "",
        ]
    return "\n".join(lines)


def _crank_lines(run_id: str, crank: dict[str, Any], wid: str) -> list[str]:
    """The iteration's trace and the feedback of the one before (already leak-guarded): a
    manifest crank's unit gets its own."""
    n = int(crank["iteration"])
    lines = [
        f"## Iteration {n} of crank {crank['crank_id']}",
        "",
        "This run is one iteration of a convergence loop: your merged work is checked by the required",
        "checks and by held-out scenarios you cannot see, and the loop goes on until they pass.",
        f"Your environment names the trace: FACTORY_RUN_ID={run_id}, FACTORY_CRANK_ID={crank['crank_id']}.",
        "",
    ]
    feedback = str((crank.get("feedback_by_worker") or {}).get(wid, crank.get("feedback")) or "")
    if feedback:
        lines += [
            "### Feedback from the previous iteration",
            "",
            "Act on it in the order its instructions give. Scenario IDs are opaque on purpose.",
            "",
            "~~~~markdown",
            feedback.rstrip("\n"),
            "~~~~",
            "",
        ]
    return lines


def render_runboard(
    run_id: str, base_ref: str, base_commit: str, rows: list[dict[str, Any]], next_line: str
) -> str:
    lines = [
        f"# Runboard: {run_id}",
        "",
        f"Base: `{base_ref}` (`{base_commit[:12]}`). Worker prompts: `<W>_worker/{PROMPT}` in the run folder",
        f"and `{NOTES_DIR}/{PROMPT}` in each worktree. Interactive workers: open an agent session in the",
        f"worktree, give it the prompt, and when it is done (`{NOTES_DIR}/{DONE_MARKER}`) collect the bundle.",
        "",
        "| Worker | Status | Mode | Branch | Worktree | Scope | Prompt |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        scope = ", ".join(f"`{g}`" for g in r["allow"]) or "(none)"
        if r["deny"]:
            scope += " (deny " + ", ".join(f"`{g}`" for g in r["deny"]) + ")"
        worktree = f"`{r['worktree']}`" if r["worktree"] else "(none)"
        lines.append(
            f"| {r['worker']} | {r['status']} | {r['mode']} | `{r['branch']}` | {worktree} | {scope} | "
            f"`{worker_dirname(r['worker'])}/{PROMPT}` |"
        )
    lines += ["", next_line, ""]
    return "\n".join(lines)


def write_runboard(writer: GuardedWriter, text: str) -> str:
    return writer.write_text(RUNBOARD, text)


def read_status(run_dir: Path, worker: str) -> str:
    """The status in the worker's STATUS.json: MISSING when there is no such file. One that is
    there but unreadable, not JSON or without a status is an UnreadableError naming it, never
    MISSING: resume and clean decide on this answer."""
    rel = f"{worker_dirname(worker)}/STATUS.json"
    path = run_dir / rel
    if not path.exists() and not path.is_symlink():
        return "MISSING"
    try:
        doc = jsonio.read_json(path, rel)
    except (FactoryError, ValueError) as exc:
        raise UnreadableError(rel, str(exc).removeprefix(f"{rel}: ")) from None
    status = doc.get("status") if isinstance(doc, dict) else None
    if not isinstance(status, str) or not status:
        raise UnreadableError(rel, "no status string")
    return status


def shown_status(run_dir: Path, worker: str) -> str:
    """The worker's status for a display or a record of what was seen: UNREADABLE for a
    STATUS.json :func:`read_status` refuses."""
    try:
        return read_status(run_dir, worker)
    except UnreadableError:
        return UNREADABLE


def worker_mode(worker: dict[str, Any], config: dict[str, Any]) -> str:

    spec = agents.resolve(worker, config)
    return "interactive" if spec is None else f"headless:{spec.preset}"


def rows(
    repo: Path,
    run_dir: Path,
    manifest: dict[str, Any],
    overrides: dict[str, str] | None = None,
    listing: list[dict[str, str]] | None = None,
) -> list[dict[str, Any]]:

    st = worktrees.settings(manifest)
    if listing is None:
        listing = gitops.worktree_list(repo)
    out = []
    for w in manifest["plan"]["workers"]:
        wid = w["id"]
        if wid not in manifest["workers"]:
            continue
        branch = worktrees.branch_name(st["branch_prefix"], manifest["run_id"], wid)
        path = worktrees.find(repo, branch, listing)
        out.append(
            {
                "worker": wid,
                "status": (overrides or {}).get(wid) or shown_status(run_dir, wid),
                "mode": worker_mode(w, manifest["config"]),
                "branch": branch,
                "worktree": str(path) if path is not None else "",
                "allow": list(w["allow"]),
                "deny": list(w["deny"]),
                "prompt": f"{worker_dirname(wid)}/{PROMPT}",
            }
        )
    return out


def next_line(run_id: str, rows_: list[dict[str, Any]]) -> str:
    pending = [r["worker"] for r in rows_ if r["status"] in ("PENDING", "RUNNING", "MISSING")]
    if pending:
        return (
            f"next: finish workers {', '.join(pending)} in their worktrees, then "
            f"`factory bundle-collect --run-id {run_id}`, `factory bundle-validate --run-id {run_id}`, "
            f"`factory integrate --run-id {run_id}`"
        )
    return f"next: `factory bundle-validate --run-id {run_id}`, then `factory integrate --run-id {run_id}`"


def refresh(
    repo: Path, run_dir: Path, manifest: dict[str, Any], overrides: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Regenerate RUNBOARD.md from the bundles' STATUS.json (plus in-flight states)."""
    rs = rows(repo, run_dir, manifest, overrides)
    text = render_runboard(
        manifest["run_id"],
        manifest["base_ref"],
        manifest["base_commit"],
        rs,
        next_line(manifest["run_id"], rs),
    )
    write_runboard(GuardedWriter(run_dir), text)
    return rs
