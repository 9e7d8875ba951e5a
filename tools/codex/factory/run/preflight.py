"""``preflight``: can a run start here? One line per failed check, with a fix."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from tools.codex.factory.errors import FactoryError, UsageError
from tools.codex.factory.infra import gitops
from tools.codex.factory.ledger.recorder import OPERATOR, Recorder
from tools.codex.factory.ledger.store import MISSING_HEAD_FIX
from tools.codex.factory.run import config as config_mod
from tools.codex.factory.run.context import Context
from tools.codex.factory.run.stages import StageResult


def checks(ctx: Context, base_ref: str, run_id: str | None) -> list[dict[str, Any]]:
    """Each check: name, ok, detail, fix. Pure reporting; nothing is created (a probe file
    in an existing runs folder is removed at once; a missing one is judged by its nearest
    existing ancestor)."""
    out: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str, fix: str = "") -> None:
        out.append({"name": name, "ok": ok, "detail": detail, "fix": "" if ok else fix})

    try:
        v = gitops.version()
        ok = v[:2] >= gitops.MIN_VERSION
        add(
            "git",
            ok,
            f"git {'.'.join(map(str, v))}",
            f"install git >= {'.'.join(map(str, gitops.MIN_VERSION))}",
        )
    except FactoryError as exc:
        add("git", False, str(exc), "install git and put it on PATH")
        return out
    try:
        repo = ctx.repo
        add("repository", True, "inside a git repository")
    except FactoryError as exc:
        add("repository", False, str(exc), "cd into your repository or pass --repo PATH")
        return out
    try:
        commit = gitops.resolve_commit(repo, base_ref)
        add("base-ref", True, f"{base_ref} -> {commit}")
    except FactoryError as exc:
        add("base-ref", False, str(exc), "pass --base-ref with a branch, tag or commit that exists")
    try:
        _ = ctx.config
        add(
            "config",
            True,
            "config valid" + (" (file + defaults)" if ctx.config.file else " (defaults)"),
        )
    except (FactoryError, OSError) as exc:
        add("config", False, str(exc), "fix the named key, or run `factory config show`")
        return out
    try:
        config_mod.check_runs_dir(repo, ctx.config)
    except FactoryError as exc:
        add(
            "runs-folder",
            False,
            str(exc),
            "set paths.runs_dir to a folder of the factory's own (default tools/codex/runs)",
        )
    else:
        try:
            add("runs-folder", True, _writable(ctx.layout.runs_dir, ctx.config.runs_rel))
        except OSError as exc:
            add(
                "runs-folder",
                False,
                f"{ctx.config.runs_rel}: {exc.strerror or exc}",
                "make the runs folder writable or set paths.runs_dir",
            )
    try:
        res = ctx.ledger.verify()
        if res.ok:
            add("ledger", True, f"ledger verifies (head seq {res.head.seq})")
        elif res.torn_tail:
            add("ledger", False, res.reason, "run `factory ledger repair`")
        elif res.head_missing:
            add("ledger", False, f"seq {res.first_bad_seq}: {res.reason}", MISSING_HEAD_FIX)
        else:
            add(
                "ledger",
                False,
                f"seq {res.first_bad_seq}: {res.reason}",
                "run `factory ledger verify` and investigate; never edit the ledger by hand",
            )
    except UsageError as exc:
        add(
            "ledger",
            False,
            str(exc),
            "fix ledger.path or paths.runs_dir, or move what is in the way",
        )
    except FactoryError as exc:
        add("ledger", False, str(exc), "run `factory ledger verify`")
    except OSError as exc:
        add(
            "ledger",
            False,
            f"{ctx.config.ledger_rel}: {exc.strerror or exc}",
            "make the ledger a readable file or set ledger.path",
        )
    if run_id is not None:
        taken = ctx.layout.run_dir(run_id).exists()
        add(
            "run-id",
            not taken,
            f"run ID {run_id} is {'taken' if taken else 'free'}",
            "choose another --run-id or omit it",
        )
    return out


def _writable(runs: Path, rel: str) -> str:
    """Probe the runs folder without creating it; raise OSError when it cannot be written."""
    if runs.is_dir():
        fd, probe = tempfile.mkstemp(dir=runs, prefix=".preflight-")
        os.close(fd)
        os.remove(probe)
        return f"{rel} is writable"
    ancestor = runs.parent
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(13, f"cannot create it: {ancestor} is not writable")
    return f"{rel} does not exist yet; it will be created (its parent {ancestor} is writable)"


def preflight(ctx: Context, rec: Recorder | None, base_ref: str, run_id: str | None) -> StageResult:
    found = checks(ctx, base_ref, run_id)
    if rec is not None:
        for c in found:
            rec.emit(
                "preflight.check",
                "preflight",
                OPERATOR,
                name=c["name"],
                ok=c["ok"],
                detail=c["detail"],
            )
    failed = [c for c in found if not c["ok"]]
    reason = "; ".join(f"{c['name']}: {c['detail']} (fix: {c['fix']})" for c in failed)
    return StageResult("preflight", "BLOCKED" if failed else "PASS", reason, {"checks": found})


def render(found: list[dict[str, Any]]) -> str:
    lines = []
    for c in found:
        mark = "OK  " if c["ok"] else "FAIL"
        line = f"{mark} {c['name']}: {c['detail']}"
        if not c["ok"]:
            line += f" -> fix: {c['fix']}"
        lines.append(line)
    return "\n".join(lines)
