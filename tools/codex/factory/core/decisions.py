"""Pure decisions: verdicts, overlaps, merge order and final status.

Every function here is a function of its (JSON) arguments only, which are recorded in the
ledger, so ``ledger-replay`` recomputes the same answers the live run gave.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from tools.codex.factory.core.globs import match_any
from tools.codex.factory.core.paths import PathRuleError, normalise_repo_path

Finding = dict[str, str]


def _finding(worker: str, path: str, rule: str, message: str, severity: str = "block") -> Finding:
    return {"worker": worker, "path": path, "rule": rule, "message": message, "severity": severity}


def _sort(findings: list[Finding]) -> list[Finding]:
    unique = {(f["worker"], f["path"], f["rule"], f["message"]): f for f in findings}
    return [unique[k] for k in sorted(unique)]


def worker_findings(
    facts: Mapping[str, Any],
    protected: Sequence[str],
    expected_scope: Mapping[str, Sequence[str]] | None = None,
    run_id: str | None = None,
) -> list[Finding]:
    """Every per-worker rule of DESIGN §5 applied to one bundle's recorded facts.

    ``expected_scope`` is the scope lock recorded at launch; a SCOPE_LOCK.json that differs
    from it is refused, so a bundle cannot widen its own scope.
    """
    w = facts["worker"]
    out: list[Finding] = []
    scope_now = facts["scope"]
    if expected_scope is not None and scope_now is not None:
        for key in ("allow", "deny", "shared"):
            if sorted(scope_now[key]) != sorted(expected_scope[key]):
                out.append(
                    _finding(
                        w,
                        "SCOPE_LOCK.json",
                        "scope-lock-changed",
                        f"{w}_worker/SCOPE_LOCK.json {key} is {sorted(scope_now[key])}, but the run was launched with "
                        f"{sorted(expected_scope[key])}: restore it, or change the plan and launch a new run",
                    )
                )
    for name in facts["missing"]:
        out.append(_finding(w, name, "bundle-file-missing", f"{w}_worker/{name} is missing"))
    for name in facts["symlinks"]:
        out.append(
            _finding(
                w,
                name,
                "bundle-file-symlink",
                f"{w}_worker/{name} is a symlink; bundle files must be regular files",
            )
        )
    for name, msg in facts["json_errors"]:
        out.append(_finding(w, name, "json-invalid", f"{w}_worker/{name} is not valid JSON: {msg}"))
    for name, where, msg in facts["schema_errors"]:
        out.append(_finding(w, name, "schema-violation", f"{w}_worker/{name} at {where}: {msg}"))
    for name, found in sorted(facts["ids"].items()):
        if found != w:
            out.append(
                _finding(w, name, "worker-id-mismatch", f"{w}_worker/{name} names worker {found!r}")
            )
    if run_id is not None and facts.get("run_id") not in (None, run_id):
        out.append(
            _finding(
                w,
                "STATUS.json",
                "run-id-mismatch",
                f"{w}_worker/STATUS.json belongs to run {facts['run_id']!r}, not {run_id!r}",
            )
        )
    status = facts["status"]
    if status is not None and status != "DONE":
        reason = facts.get("status_reason") or "no reason given"
        out.append(
            _finding(
                w, "STATUS.json", "worker-not-done", f"worker {w} status is {status}: {reason}"
            )
        )
    if facts["patch_error"]:
        out.append(
            _finding(
                w,
                "DIFF.patch",
                "patch-unparseable",
                f"{w}_worker/DIFF.patch: {facts['patch_error']}",
            )
        )

    touched = list(facts["touched"])
    listed = list(facts["files_changed"])
    safe: list[str] = []
    for path in sorted(set(touched) | set(listed)):
        try:
            normalise_repo_path(path)
        except PathRuleError as exc:
            out.append(_finding(w, path, exc.rule, f"worker {w}: {exc}"))
        else:
            safe.append(path)
    if len(listed) != len(set(listed)):
        dupes = sorted(p for p, n in Counter(listed).items() if n > 1)
        for p in dupes:
            out.append(
                _finding(
                    w, p, "files-changed-duplicate", f"worker {w}: FILES_CHANGED lists {p!r} twice"
                )
            )
    if (
        facts["patch_error"] is None
        and "DIFF.patch" not in facts["missing"]
        and "FILES_CHANGED.json" not in _broken(facts)
    ):
        for p in sorted(set(touched) - set(listed)):
            out.append(
                _finding(
                    w,
                    p,
                    "files-changed-incomplete",
                    f"worker {w}: DIFF.patch touches {p!r} but FILES_CHANGED does not list it",
                )
            )
        for p in sorted(set(listed) - set(touched)):
            out.append(
                _finding(
                    w,
                    p,
                    "files-changed-not-in-patch",
                    f"worker {w}: FILES_CHANGED lists {p!r} but DIFF.patch does not touch it",
                )
            )
    scope = facts["scope"]
    for p in safe:
        hit = match_any(p, protected, ignore_case=True)
        if hit is not None:
            out.append(
                _finding(
                    w, p, "protected-path", f"worker {w}: {p!r} is protected (matches {hit!r})"
                )
            )
        if scope is None:
            continue
        denied = match_any(p, scope["deny"], ignore_case=True)
        if denied is not None:
            out.append(
                _finding(w, p, "scope-denied", f"worker {w}: {p!r} matches deny glob {denied!r}")
            )
        elif match_any(p, scope["allow"]) is None:
            out.append(
                _finding(
                    w,
                    p,
                    "scope-not-allowed",
                    f"worker {w}: {p!r} is outside its allow globs {scope['allow']}",
                )
            )
    for p, existing in sorted(facts["base_case_variants"].items()):
        out.append(
            _finding(
                w,
                p,
                "case-collision",
                f"worker {w}: {p!r} differs only by case from {existing!r} in the base",
            )
        )
    by_lower: dict[str, list[str]] = {}
    for p in safe:
        by_lower.setdefault(p.lower(), []).append(p)
    for group in sorted(by_lower.values()):
        if len(group) > 1:
            for p in group:
                others = [o for o in group if o != p]
                out.append(
                    _finding(
                        w,
                        p,
                        "case-collision",
                        f"worker {w}: {p!r} differs only by case from {others}",
                    )
                )
    for where, rule, msg in facts.get("limit_problems", []):
        out.append(_finding(w, where, rule, f"worker {w}: {where}: {msg}"))
    for rel, rule, msg in facts["log_problems"]:
        out.append(_finding(w, f"LOGS/{rel}", rule, f"worker {w}: LOGS/{rel}: {msg}"))
    return _sort(out)


def _broken(facts: Mapping[str, Any]) -> set[str]:
    names = set(facts["missing"]) | set(facts["symlinks"])
    names |= {n for n, _ in facts["json_errors"]}
    names |= {n for n, _, _ in facts["schema_errors"]}
    return names


def overlaps(
    facts_by_worker: Mapping[str, Mapping[str, Any]], allow_identical: bool
) -> list[dict[str, Any]]:
    """Paths touched by two or more workers, each with its resolution; symmetric in workers."""
    owners: dict[str, list[str]] = {}
    for w in sorted(facts_by_worker):
        for p in set(facts_by_worker[w]["touched"]):
            owners.setdefault(p, []).append(w)
    out = []
    for path in sorted(owners):
        ws = sorted(owners[path])
        if len(ws) < 2:
            continue
        scopes = [facts_by_worker[w]["scope"] for w in ws]
        if all(s is not None and match_any(path, s["shared"]) is not None for s in scopes):
            resolution = "shared"
        elif (
            allow_identical
            and len({facts_by_worker[w]["section_hashes"].get(path) for w in ws}) == 1
        ):
            resolution = "identical"
        else:
            resolution = "blocked"
        out.append({"path": path, "workers": ws, "resolution": resolution})
    return out


def cross_case_collisions(facts_by_worker: Mapping[str, Mapping[str, Any]]) -> list[Finding]:
    by_lower: dict[str, set[tuple[str, str]]] = {}
    for w in sorted(facts_by_worker):
        for p in facts_by_worker[w]["touched"]:
            by_lower.setdefault(p.lower(), set()).add((p, w))
    out = []
    for group in by_lower.values():
        spellings = {p for p, _ in group}
        if len(spellings) < 2:
            continue
        for p, w in sorted(group):
            others = sorted(f"{o} ({ow})" for o, ow in group if o != p)
            out.append(
                _finding(
                    w,
                    p,
                    "case-collision",
                    f"worker {w}: {p!r} differs only by case from {', '.join(others)}",
                )
            )
    return out


def evaluate(
    facts_by_worker: Mapping[str, Mapping[str, Any]],
    policy: Mapping[str, Any],
    gitdir_changed: Sequence[str] = (),
) -> dict[str, Any]:
    """The whole bundle-validate judgement: findings, warnings, overlaps, verdicts, status.

    ``gitdir_changed``: paths of the repository's shared git folder (hooks, config) that changed
    while the run's agents worked; the factory restored them, and every worker is blocked, since
    any of them could have done it.
    """
    findings: list[Finding] = []
    for w in sorted(facts_by_worker):
        for rel in gitdir_changed:
            findings.append(
                _finding(
                    w,
                    f".git/{rel}",
                    "git-dir-changed",
                    f"the repository's .git/{rel} changed while the run's agents worked (restored "
                    "by the factory): a hook or config there would run in the operator's git",
                )
            )
    scopes = policy.get("scopes", {})
    for w in sorted(facts_by_worker):
        findings.extend(
            worker_findings(
                facts_by_worker[w], policy["protected_paths"], scopes.get(w), policy.get("run_id")
            )
        )
    findings.extend(cross_case_collisions(facts_by_worker))
    ovl = overlaps(facts_by_worker, bool(policy["allow_identical_patch_overlap"]))
    for o in ovl:
        if o["resolution"] == "blocked":
            for w in o["workers"]:
                others = [x for x in o["workers"] if x != w]
                findings.append(
                    _finding(
                        w,
                        o["path"],
                        "overlap",
                        f"{o['path']!r} is touched by {', '.join(o['workers'])}: worker {w} overlaps {', '.join(others)} "
                        "without a shared scope lock entry on every side",
                    )
                )
    warnings: list[Finding] = []
    if policy["case_collisions"] == "warn":
        for f in findings:
            if f["rule"] == "case-collision":
                warnings.append({**f, "severity": "warn"})
        findings = [f for f in findings if f["rule"] != "case-collision"]
    findings = _sort(findings)
    verdicts = {
        w: ("BLOCKED" if any(f["worker"] == w for f in findings) else "PASS")
        for w in sorted(facts_by_worker)
    }
    status = "BLOCKED" if findings or not facts_by_worker else "PASS"
    return {
        "status": status,
        "verdicts": verdicts,
        "findings": findings,
        "warnings": _sort(warnings),
        "overlaps": ovl,
        "touched": {w: sorted(facts_by_worker[w]["touched"]) for w in sorted(facts_by_worker)},
    }


def merge_order(
    depends_on: Mapping[str, Sequence[str]], strict: bool = False
) -> tuple[list[str], str]:
    """Topological order by declared dependencies, ties by worker id; (partial, reason) on a cycle.

    Dependencies on workers outside this integration are ignored (they are not being merged),
    unless ``strict`` (feature flag strict_handoff_dependencies): then they block the merge.
    """
    workers = sorted(depends_on)
    if strict:
        missing = sorted(
            {f"{w}->{d}" for w in workers for d in depends_on[w] if d not in depends_on}
        )
        if missing:
            return [], f"dependencies on workers outside this integration: {', '.join(missing)}"
    deps = {w: sorted(d for d in set(depends_on[w]) if d in depends_on and d != w) for w in workers}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(workers):
        ready = [w for w in workers if w not in done and all(d in done for d in deps[w])]
        if not ready:
            stuck = [w for w in workers if w not in done]
            return order, f"dependency cycle among workers {', '.join(stuck)}"
        order.append(ready[0])
        done.add(ready[0])
    return order, ""


def check_status(checks: Sequence[Mapping[str, Any]]) -> tuple[str, list[str]]:
    """PASS iff every required check ran with rc 0 (advisory ones never block)."""
    reasons = []
    for c in checks:
        if not c["required"]:
            continue
        if c["timed_out"]:
            reasons.append(f"required check {c['name']!r} timed out")
        elif c["rc"] != 0:
            reasons.append(f"required check {c['name']!r} exited with rc={c['rc']}")
    return ("BLOCKED" if reasons else "PASS"), reasons


def integrate_outcome(
    merge_reason: str,
    applied: Sequence[Mapping[str, Any]],
    checks: Sequence[Mapping[str, Any]],
    conflict: str = "",
) -> tuple[str, str]:
    """The integrate stage's status and reason from what it recorded: ``merge.planned``'s reason,
    the ``patch.applied`` events in merge order (worker, ok, files), the error of the all-together
    apply when every patch applied alone (``patch.conflict``) and the ``check.finished`` events."""
    if merge_reason:
        return "BLOCKED", merge_reason
    for i, a in enumerate(applied):
        if not a["ok"]:
            done = [str(x["worker"]) for x in applied[:i]]
            return "BLOCKED", (
                f"patch of {a['worker']}_worker does not apply to the base "
                f"(after {', '.join(done) or 'nothing'}): {', '.join(a['files'])}"
            )
    if conflict:
        return "BLOCKED", f"the patches do not apply together: {conflict}"
    status, reasons = check_status(checks)
    return status, "; ".join(reasons)


def with_policy(
    status: str, reason: str, violations: Sequence[Mapping[str, Any]]
) -> tuple[str, str]:
    """A write the guarded writer refused blocks the stage that was running when it passed."""
    if violations and status == "PASS":
        return "BLOCKED", f"write refused: {violations[0]['path']}"
    return status, reason


def final_status(stage_statuses: Sequence[str]) -> str:
    """FAIL beats BLOCKED beats PENDING beats PASS; SKIPPED stages do not count."""
    counted = [s for s in stage_statuses if s != "SKIPPED"]
    for s in ("FAIL", "BLOCKED", "PENDING"):
        if s in counted:
            return s
    return "PASS" if counted else "FAIL"


def final_verdict(
    rows: Sequence[Mapping[str, Any]], violations: Sequence[Mapping[str, Any]] = ()
) -> tuple[str, list[str]]:
    """The run's final status and reasons from its stage rows (a refused write blocks it)."""
    statuses = [str(r["status"]) for r in rows] + (["BLOCKED"] if violations else [])
    reasons = [
        f"{r['stage']}: {r['reason']}"
        for r in rows
        if r["status"] in ("BLOCKED", "FAIL") and r["reason"]
    ]
    return final_status(statuses), reasons
