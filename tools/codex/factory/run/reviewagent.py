"""Gate 0's reviewer agent (config ``review.agent``), run during ``bundle-validate``.

Each worker Gate 0 reads gets one headless agent (any preset, started as a worker's agent is:
:mod:`run.agents`) in a scratch folder outside the repository, shown the diff validation
judged without its held-out sections and Gate 0's checklist. Its standard output is its
answer: kept in the snapshot store, judged by :func:`judge` (schema
``review_verdict``) and recorded with the judgement in a ``review.agent`` event, one per
attempt. A failed attempt (no start, crash, time-out, not JSON, schema mismatch) is retried
once; ``core.reviewagent`` turns the recorded attempts into findings.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from tools.codex.factory.core import patchparse, scenarios, validation
from tools.codex.factory.core import reviewagent as core
from tools.codex.factory.core.feedback import leaks
from tools.codex.factory.errors import FactoryError
from tools.codex.factory.infra import fsutil, gitops, proc, schemas
from tools.codex.factory.records.validation import (
    AgentAttempt,
    AgentFinding,
    AgentPolicy,
    BundleFacts,
)
from tools.codex.factory.run import agents, snapshots
from tools.codex.factory.run.handle import RunHandle, run_setting

SCHEMA = "review_verdict"
STDERR_TAIL = 2000


def spec(manifest: dict[str, Any]) -> agents.AgentSpec | None:
    """The reviewer agent the run was launched with (None: none)."""
    raw = run_setting(manifest, "review.agent")
    if raw is None:
        return None
    wcfg = {"timeout_s": run_setting(manifest, "workers.timeout_s")}
    return agents.spec_of(raw, "config review.agent", wcfg)


def policy_entry(manifest: dict[str, Any]) -> AgentPolicy | None:
    """What validation's policy records of the agent (its command, not where it was set)."""
    found = spec(manifest)
    if found is None:
        return None
    return {
        "preset": found.preset,
        "argv": list(found.argv),
        "prompt_via": found.prompt_via,
        "timeout_s": found.timeout_s,
    }


def held_out(manifest: dict[str, Any]) -> Callable[[str], bool]:
    patterns = list(run_setting(manifest, "security.holdout_paths"))
    return lambda path: validation.protected_match(path, patterns) is not None


def prompt_for(manifest: dict[str, Any], worker: str, patch: patchparse.Patch) -> tuple[str, bytes]:
    """The prompt a worker's reviewer agent is given and the diff it shows (replay rebuilds
    both from the patch snapshot)."""
    diff, withheld = core.visible_diff(patch, held_out(manifest))
    return core.prompt(worker, diff, withheld), diff


# -- judging one answer (replay calls this on the recorded inputs) --------------------------------
def judge(
    rc: int | None, timed_out: bool, start_error: str, answer: bytes | None
) -> tuple[list[AgentFinding] | None, str | None]:
    """(findings, None) for a valid verdict, else (None, why the attempt failed)."""
    if start_error:
        return None, f"not run: {core.plain(start_error, core.MAX_ERROR)}"
    if timed_out:
        return None, "timed out (its process tree was stopped)"
    if rc is None:
        return None, "interrupted"
    if rc != 0:
        return None, f"exited with rc={rc}"
    if answer is None:
        return None, "no answer"
    if len(answer) > core.MAX_ANSWER_BYTES:
        return None, f"its answer is larger than {core.MAX_ANSWER_BYTES} bytes"
    try:
        text = answer.decode("utf-8").removeprefix("\ufeff").strip()
    except UnicodeDecodeError:
        return None, "its answer is not UTF-8"
    try:
        doc = json.loads(_unfenced(text))
    except (ValueError, RecursionError) as exc:
        return None, f"its answer is not JSON ({core.plain(str(exc), 200)})"
    problems = schemas.errors(SCHEMA, doc)
    if problems:
        where, what = problems[0]
        return None, f"its answer does not match the verdict schema: {where}: " + core.plain(
            what, 300
        )
    return [
        {
            "severity": f["severity"],
            "path": f["path"],
            "line": f["line"],
            "rule": f["rule"],
            "text": f["text"],
        }
        for f in doc["findings"]
    ], None


def _unfenced(text: str) -> str:
    """The answer without one surrounding Markdown code fence (```json ... ```)."""
    lines = text.splitlines()
    if len(lines) >= 2 and lines[0].startswith("```") and lines[-1].strip() == "```":
        return "\n".join(lines[1:-1])
    return text


# -- running ----------------------------------------------------------------------------------
def review_agents(
    run: RunHandle, facts: Mapping[str, BundleFacts], parsed: Mapping[str, patchparse.Patch]
) -> dict[str, list[AgentAttempt]]:
    """Each reviewable worker's recorded attempts (``review.agent`` payloads), in order."""
    found = spec(run.manifest)
    chosen = sorted(w for w, f in facts.items() if validation.reviewable(f) and w in parsed)
    if found is None or not chosen:
        return {}
    shown = {w: prompt_for(run.manifest, w, parsed[w]) for w in chosen}
    prompts = {w: p for w, (p, _) in shown.items()}
    guard, unreadable = _scenarios(run)
    attempts: dict[str, list[AgentAttempt]] = {w: [] for w in chosen}
    pending: list[str] = []
    for w in chosen:
        leak = unreadable or _leak(prompts[w], guard)
        if leak:
            attempts[w].append(_record(run, w, facts[w], prompts[w], 1, None, leak))
        else:
            pending.append(w)
    for attempt in range(1, core.MAX_ATTEMPTS + 1):
        if not pending:
            break
        results = _round(run, found, {w: shown[w] for w in pending})
        for w in pending:
            attempts[w].append(_record(run, w, facts[w], prompts[w], attempt, results[w], ""))
        pending = [w for w in pending if attempts[w][-1]["error"] is not None]
    return attempts


def _record(
    run: RunHandle,
    worker: str,
    facts: BundleFacts,
    prompt: str,
    attempt: int,
    result: tuple[agents.JobResult, bytes | None, bytes] | None,
    start_error: str,
) -> AgentAttempt:
    """Judge one attempt, keep its answer in the snapshot store and record it."""
    job, answer, err = result if result is not None else (None, None, b"")
    if job is not None and not job.started:
        start_error = job.error or "its agent could not start"
    start_error = core.plain(start_error, core.MAX_ERROR)
    rc = job.rc if job is not None else None
    timed_out = bool(job.timed_out) if job is not None else False
    findings, error = judge(rc, timed_out, start_error, answer)
    payload: AgentAttempt = {
        "worker": worker,
        "attempt": attempt,
        "patch_sha256": str(facts["apply_sha256"]),
        "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
        "rc": rc,
        "timed_out": timed_out,
        "start_error": start_error,
        "answer_sha256": None if answer is None else snapshots.put(run.writer, answer),
        "findings": findings,
        "error": error,
        "stderr_tail": core.plain(err.decode("utf-8", "replace"), STDERR_TAIL),
    }
    run.recorder.emit("review.agent", "bundle-validate", f"{worker}_worker", **dict(payload))
    return payload


def _scenarios(run: RunHandle) -> tuple[list[scenarios.Scenario], str]:
    """The base commit's holdout scenarios, for the leak guard, and why nothing may be sent
    when they cannot all be read (a guard that skipped one would let its lines through)."""
    folder = str(run_setting(run.manifest, "scenarios.dir")).strip("/")
    limit = int(run_setting(run.manifest, "limits.max_file_bytes"))
    out: list[scenarios.Scenario] = []
    try:
        for path, data in gitops.tree_files(run.ctx.repo, run.base_commit, folder, limit):
            name = path.rsplit("/", 1)[-1].lower()
            if name.endswith(".md") and name != "readme.md":
                out.append(scenarios.parse(path, data))
    except FactoryError as exc:
        why = core.plain(str(exc), core.MAX_ERROR)
        return [], f"holdout-leak: the scenarios cannot be guarded ({why}); nothing was sent"
    return out, ""


def _leak(prompt: str, guard: list[scenarios.Scenario]) -> str:
    found = leaks(prompt, guard) if guard else []
    if not found:
        return ""
    first = found[0]
    return (
        f"holdout-leak: the prompt's line {first.line} holds the {first.what} of scenario "
        f"{first.scenario} ({len(found)} place(s)); nothing was sent to the agent"
    )


def _round(
    run: RunHandle, found: agents.AgentSpec, prompts: Mapping[str, tuple[str, bytes]]
) -> dict[str, tuple[agents.JobResult, bytes | None, bytes]]:
    """Run one attempt for each worker, in parallel, each in its own scratch folder."""
    done: dict[str, agents.JobResult] = {}
    with tempfile.TemporaryDirectory(prefix="factory-review-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        jobs = [_job(run, found, root / w, w, *p) for w, p in sorted(prompts.items())]
        runner = agents.Runner(
            max_parallel=int(run_setting(run.manifest, "workers.max_parallel")),
            clock=run.ctx.clock,
            on_start=lambda job: None,
            on_done=lambda job, res: done.__setitem__(job.worker, res),
        )
        if runner.run(jobs):
            raise KeyboardInterrupt
        if runner.errors:
            raise runner.errors[0]
        return {w: (done[w], *_outputs(root / w, done[w])) for w in prompts}


def _outputs(folder: Path, res: agents.JobResult) -> tuple[bytes | None, bytes]:
    """The agent's standard output (bounded: one byte over the limit is enough to refuse it)
    and the tail of its standard error, each read from the log we created, never through a
    link or a FIFO the agent put in its place (none: no answer)."""
    out: bytes | None = None
    if res.started:
        try:
            out = fsutil.read_regular(folder / "logs" / "stdout", core.MAX_ANSWER_BYTES + 1)
        except OSError:
            out = None
    try:
        fd = fsutil.open_regular(folder / "logs" / "stderr", os.O_RDONLY)
    except OSError:
        return out, b""
    try:
        os.lseek(fd, max(0, os.fstat(fd).st_size - STDERR_TAIL), os.SEEK_SET)
        return out, os.read(fd, STDERR_TAIL)
    finally:
        os.close(fd)


def _job(
    run: RunHandle, found: agents.AgentSpec, folder: Path, worker: str, prompt: str, diff: bytes
) -> agents.Job:
    """One agent's job: its folder holds PROMPT.md and DIFF.patch (its working folder) and
    its logs, outside the repository."""
    work, logs = folder / "work", folder / "logs"
    work.mkdir(parents=True)
    logs.mkdir()
    data = prompt.encode("utf-8")
    (work / "PROMPT.md").write_bytes(data)
    (work / "DIFF.patch").write_bytes(diff)
    values = {
        "prompt_file": str(work / "PROMPT.md"),
        "worktree": str(work),
        "worker_id": worker,
        "run_id": run.run_id,
        "base_ref": str(run.manifest["base_ref"]),
        "base_commit": run.base_commit,
        "python": sys.executable,
    }

    def open_logs() -> tuple[BinaryIO, BinaryIO]:
        return (logs / "stdout").open("wb"), (logs / "stderr").open("wb")

    return agents.Job(
        worker=worker,
        spec=found,
        argv=agents.expand(found.argv, values),
        cwd=work,
        env=proc.base_env({"FACTORY_RUN_ID": run.run_id}, drop_git=True),
        stdin=data if found.prompt_via == "stdin" else None,
        open_logs=open_logs,
    )
