"""Feedback for the next iteration, compiled from recorded results only, and the leak guard
every text passes before an agent may see it.

The feedback names scenarios by opaque ID and category, says how they failed as a symptom
class ("assertion", "import", ...), and orders the work: required checks, then regressions,
then failing scenarios by category, then advisory findings. ``detail = "full"`` adds output
tails. Either way :func:`leaks` must find nothing in it: no line of a scenario's evaluation
method, behavioral expectation or pass criteria, and no canary token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from tools.codex.factory.core.convergence import fail_count, percent
from tools.codex.factory.core.paths import worker_dirname
from tools.codex.factory.core.scenarios import Scenario
from tools.codex.factory.records.crank import CheckOutcome, Iteration, ScenarioResult

DETAILS = ("summary", "full")
MIN_GUARDED = 12  # shorter scenario lines ("fi", "set -e", "exit 0") say nothing about it


class _Refused(TypedDict):
    worker: str
    findings: list[str]


class Refusal(_Refused, total=False):
    """A worker whose bundle did not enter the tree, and why (its findings, one line each);
    or, with findings empty, one that did, with Gate 0's warnings on its tests."""

    warnings: list[str]


def blocked(refused: Sequence[Refusal]) -> list[Refusal]:
    """The workers whose work did not enter the tree (those with findings; a record without
    warnings is one, as earlier releases recorded only those)."""
    return [r for r in refused if r["findings"] or not r.get("warnings")]


class _ForWorker(TypedDict, total=False):
    # The worker whose prompt this feedback is for ("" or absent: every worker's): a failed
    # required check then says whether that worker's change is what broke it.
    for_worker: str


class FeedbackInput(_ForWorker):
    iteration: int
    trajectory: list[Iteration]  # every iteration up to and including this one
    threshold: list[int]  # [num, den]
    checks: list[CheckOutcome]
    scenarios: list[ScenarioResult]
    tails: dict[str, str]  # scenario ID -> output tail (used with detail "full")
    regressions: list[str]
    refused: list[Refusal]
    detail: str


def compile_feedback(inp: FeedbackInput) -> str:
    """The markdown of ``feedback_iter_<N>.md`` (deterministic: same input, same bytes)."""
    n = inp["iteration"]
    me = inp.get("for_worker", "")
    now = inp["trajectory"][-1]
    required = [c for c in inp["checks"] if c["required"]]
    advisory = [c for c in inp["checks"] if not c["required"]]
    failed_required = [c for c in required if c["rc"] != 0 or c["timed_out"]]
    failed_advisory = [c for c in advisory if c["rc"] != 0 or c["timed_out"]]
    failing = sorted(
        (r for r in inp["scenarios"] if not r["passed"] and r["outcome"] != "infra"),
        key=lambda r: (r["category"], r["id"]),
    )
    regressed = set(inp["regressions"])
    num, den = inp["threshold"]
    out = [f"# Feedback for iteration {n + 1} (results of iteration {n})", ""]
    out += ["## Summary", ""]
    out.append(
        f"- Satisfaction: {now['satisfaction']['passed']}/{now['satisfaction']['total']} "
        f"({percent(now['satisfaction'])}); threshold {percent({'passed': num, 'total': den})}"
    )
    out.append(
        f"- Required checks (gate 1): {'PASS' if not failed_required else 'FAIL'} "
        f"({len(required) - len(failed_required)} of {len(required)} passed)"
    )
    out.append(f"- Advisory checks (gate 2): {len(failed_advisory)} finding(s)")
    counts = Counter(r["outcome"] for r in inp["scenarios"])
    out.append(
        "- Scenarios (gate 3): "
        + ", ".join(f"{counts[k]} {k}" for k in ("pass", "fail", "flaky", "infra") if counts[k])
    )
    out.append(f"- Regressions: {len(inp['regressions'])}")
    refused = blocked(inp["refused"])
    warned = [r for r in inp["refused"] if r.get("warnings")]
    if refused:
        out.append(f"- Workers whose work did not enter the tree: {len(refused)}")
    out += ["", "## Convergence trajectory", ""]
    out += [
        "| Iteration | Satisfaction | Required checks | Advisory findings | Delta |",
        "|---|---|---|---|---|",
    ]
    prev: Iteration | None = None
    for it in inp["trajectory"]:
        sat = it["satisfaction"]
        delta = "-" if prev is None else f"{sat['passed'] - prev['satisfaction']['passed']:+d}"
        out.append(
            f"| {it['iteration']} | {sat['passed']}/{sat['total']} ({percent(sat)}) | "
            f"{it['gate1']} | {it['advisory']} | {delta} |"
        )
        prev = it
    causes = Counter(c["symptom_class"] for c in failed_required + failed_advisory)
    causes.update(r["symptom_class"] for r in failing)
    out += ["", "## Likely root causes", ""]
    out += [f"- {cls}: {k}" for cls, k in sorted(causes.items(), key=lambda x: (-x[1], x[0]))] or [
        "- none"
    ]
    out += ["", "## Failures", ""]
    if failed_required:
        out += ["### Required checks", ""]
        for c in sorted(failed_required, key=lambda c: c["name"]):
            out.append(f"- {c['name']}: {_how(c)}" + _tests(c) + _blame(c, me))
        out.append("")
    if regressed:
        out += ["### Regressions (passed before, fail now)", ""]
        out += [_scenario_line(r) for r in failing if r["id"] in regressed]
        out.append("")
    rest = [r for r in failing if r["id"] not in regressed]
    if rest:
        out += ["### Scenarios", ""]
        out += [_scenario_line(r) for r in rest]
        out.append("")
    if failed_advisory:
        out += ["### Advisory findings", ""]
        for c in sorted(failed_advisory, key=lambda c: c["name"]):
            out.append(f"- {c['name']}: {_how(c)}" + _tests(c))
        out.append("")
    if refused:
        out += ["### Work that did not enter the tree", ""]
        for ref in sorted(refused, key=lambda r: r["worker"]):
            out.append(f"- {ref['worker']}: " + "; ".join(ref["findings"]))
        out.append("")
    if warned:
        out += ["### Test-honesty warnings (they do not block)", ""]
        for ref in sorted(warned, key=lambda r: r["worker"]):
            out.append(f"- {ref['worker']}: " + "; ".join(ref.get("warnings", [])))
        out.append("")
    if not (failed_required or failing or failed_advisory or refused or warned):
        out += ["- none", ""]
    out += ["## Instructions", ""]
    steps: list[str] = []
    mine = [c for c in failed_required if not _not_mine(c, me)]
    if mine:
        steps.append(
            "Make the required checks pass first: "
            + ", ".join(c["name"] for c in sorted(mine, key=lambda c: c["name"]))
            + "."
        )
    others = [c for c in failed_required if _not_mine(c, me)]
    if others:
        steps.append(
            "Required checks broken by another worker's change, not yours (do not work around "
            "them): " + ", ".join(c["name"] for c in sorted(others, key=lambda c: c["name"])) + "."
        )
    if refused:
        steps.append(
            "Fix what kept your work out of the tree (listed under Failures): work outside "
            "your scope, or a bundle that could not be read, never reaches it."
        )
    if regressed:
        steps.append(
            "Fix the regressions next: " + ", ".join(sorted(regressed)) + " passed before."
        )
    by_category: dict[str, list[str]] = {}
    for r in rest:
        by_category.setdefault(r["category"], []).append(r["id"])
    for category, ids in sorted(by_category.items()):
        steps.append(f"Then the failing {category} scenarios: {', '.join(ids)}.")
    if failed_advisory:
        steps.append(
            "Then the advisory findings (they do not block): "
            + ", ".join(c["name"] for c in sorted(failed_advisory, key=lambda c: c["name"]))
            + "."
        )
    if warned:
        steps.append(
            "Make your tests honest where the warnings say so: a test asserts what the code "
            "does, and nothing is skipped, deselected or hard-coded to pass."
        )
    if not steps:
        steps.append("Everything measured passes: keep it that way.")
    out += [f"{i}. {step}" for i, step in enumerate(steps, 1)]
    if inp["detail"] == "full":
        out += ["", "## Output tails", ""]
        for c in sorted(failed_required + failed_advisory, key=lambda c: c["name"]):
            out += [f"### {c['name']}", "", *_fenced(c["tail"]), ""]
        for r in failing:
            out += [f"### {r['id']}", "", *_fenced(inp["tails"].get(r["id"], "")), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _how(c: CheckOutcome) -> str:
    if c["timed_out"]:
        return "timed out"
    return f"exit {c['rc']} ({c['symptom_class']})"


def _tests(c: CheckOutcome) -> str:
    return f"; failing tests: {', '.join(c['failing_tests'])}" if c["failing_tests"] else ""


def _blame(c: CheckOutcome, me: str) -> str:
    """Whom culprit isolation blamed a failed required check on, as the reader needs it: for
    one worker's feedback, whether it is that worker's change."""
    who, cause = c.get("caused_by", []), c.get("cause", "")
    if cause == "flaky":
        return "; it passed on a rerun (flaky): no change is blamed"
    if cause == "base":
        return "; the base fails it too: no change is blamed"
    if not who:
        return ""
    if cause == "alone":
        how = "it fails with that change alone" if len(who) == 1 else "each fails it alone"
    else:
        how = "they fail it together, each passes alone"
    if me and me in who:
        return f"; caused by your change ({how})"
    if me:
        return "; caused by another worker's change, not yours"
    return f"; caused by {', '.join(worker_dirname(w) for w in who)} ({how})"


def _not_mine(c: CheckOutcome, me: str) -> bool:
    """For one worker's feedback: a check isolation blamed only on other workers' changes."""
    who = c.get("caused_by", [])
    return bool(me and who and me not in who)


def _scenario_line(r: ScenarioResult) -> str:
    return f"- {r['id']} ({r['category']}): {r['outcome']}, {fail_count(r)}, {r['symptom_class']}"


def _fenced(text: str) -> list[str]:
    fence = "```"
    while fence in text:
        fence += "`"
    return [fence, text.rstrip("\n"), fence]


# -- the leak guard ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Leak:
    scenario: str  # its opaque ID
    line: int  # in the guarded text, from 1
    what: str  # canary | evaluation method | behavioral expectation | pass criteria


def _norm(line: str) -> str:
    """A line as the guard compares it: list and quote markers, case and every whitespace
    character dropped (``add(2,3)`` is ``add(2, 3)``)."""
    text = line.strip().lstrip("-*> ").casefold()
    return "".join(text.split())


def guarded_lines(s: Scenario) -> list[tuple[str, str]]:
    """(normalised line, what) of a scenario that must never reach an agent."""
    out: list[tuple[str, str]] = []
    for what, text in (
        ("evaluation method", s.code),
        ("behavioral expectation", s.expectation),
        ("pass criteria", s.pass_criteria),
    ):
        for line in text.splitlines():
            norm = _norm(line)
            if len(norm) >= MIN_GUARDED:
                out.append((norm, what))
    return sorted(set(out))


def leaks(text: str, scenarios: Sequence[Scenario]) -> list[Leak]:
    """Every place ``text`` holds a canary token or a guarded line of a scenario."""
    found: list[Leak] = []
    lines = text.splitlines()
    normed = [_norm(line) for line in lines]
    for s in sorted(scenarios, key=lambda s: s.id):
        guarded = guarded_lines(s)
        for n, (raw, norm) in enumerate(zip(lines, normed, strict=True), 1):
            if any(token in raw for token in s.canaries):
                found.append(Leak(s.id, n, "canary"))
                continue
            hit = next((what for g, what in guarded if g in norm), None)
            if hit is not None:
                found.append(Leak(s.id, n, hit))
    return found
