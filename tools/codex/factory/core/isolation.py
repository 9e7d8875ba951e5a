"""Culprit isolation after a required check failed on the merged result: a pure step function.

The live run and replay call :func:`step` with the probes recorded so far; it answers with the
next probe to run or the final result. It replays the whole search from the start, so a probe
it would not have asked for (or asked for in another shape) is an :class:`IsolationMismatch`.

The search, in check runs ("probes"), for the required checks that failed on the merged result:

1. **rerun** the full set once: a check that passes now is flaky, never blamed on a worker
   (not counted against the bound);
2. **alone**: each worker on the base with its declared dependencies (so a dependent is not
   blamed for needing them); one that fails is a culprit. With one worker nothing is tested:
   the failing merged result was that worker alone. A check every worker fails alone is run
   on the **base** once: failing there too, it is nobody's (``base``);
3. **bisect** the workers that pass alone: their combination (tested once if some were left
   out, else known from the rerun) is searched for the smallest set that fails although each
   member passes alone (an interaction), by prefix bisection in merge order (the last part of
   each halving is inferred, never retested), rounds adding one member each.

Probes beyond ``max_runs`` are not run: the result is then ``exhausted`` and what was not found
is undetermined (never guessed).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Literal, TypedDict

# What STATUS.json (and --json) say of an isolation; null each when there was none.
STATUS_KEYS = (
    "culprits",
    "interactions",
    "flaky",
    "base_failing",
    "isolation_runs",
    "isolation_exhausted",
    "worker_verdicts",
)

Step = Literal["rerun", "alone", "base", "bisect"]


class Ask(TypedDict):
    """A probe to run: these workers' patches on the base (merge order), these checks."""

    step: Step
    workers: list[str]
    checks: list[str]


class Probe(TypedDict):
    """A recorded probe: what ran and, per check, whether it passed."""

    step: Step
    workers: list[str]
    passed: dict[str, bool]


class Culprit(TypedDict):
    worker: str
    check: str
    how: str


class Interaction(TypedDict):
    workers: list[str]
    check: str


class Result(TypedDict):
    culprits: list[Culprit]
    interactions: list[Interaction]
    flaky: list[str]
    base: list[str]  # checks the base commit fails too: no worker is blamed for them
    runs: int
    exhausted: bool


def culprit_tests(
    culprits: Sequence[Culprit],
    probes: Sequence[Probe],
    tests: Sequence[Mapping[str, Sequence[str]]],
) -> list[dict[str, object]]:
    """The culprits as the report gives them: each with the failing tests its own ``alone``
    probe showed for that check (``tests``, when any were named), from the recorded probes and
    the failing test names recorded beside each (``tests[i]``: check -> names)."""
    out: list[dict[str, object]] = []
    for c in culprits:
        mine = [
            i
            for i, p in enumerate(probes)
            if p["step"] == "alone"
            and c["worker"] in p["workers"]
            and p["passed"].get(c["check"]) is False
        ]
        shown: dict[str, object] = dict(c)
        if mine:
            own = min(mine, key=lambda i: (len(probes[i]["workers"]), i))
            names = list(tests[own].get(c["check"], [])) if own < len(tests) else []
            if names:
                shown["tests"] = names
        out.append(shown)
    return out


class IsolationMismatch(ValueError):
    """A recorded probe is not the one the search asks for at that point."""

    def __init__(self, index: int, expected: Ask | None, found: Probe) -> None:
        self.index, self.expected, self.found = index, expected, found
        super().__init__(f"probe {index + 1}: expected {expected}, found {found}")


def default_max_runs(n: int) -> int:
    """n + 2*ceil(log2 n), or the pair search's worst case where that is one more (n = 8, 15,
    16 up to 25 workers): one culprit or one interacting pair is always found within it."""
    if n < 2:
        return n
    return n + max(2 * (n - 1).bit_length(), _pair_cost(1, n))


def step(
    order: Sequence[str],
    depends_on: Mapping[str, Sequence[str]],
    failed: Sequence[str],
    probes: Sequence[Probe],
    max_runs: int | None = None,
) -> Ask | Result:
    """The next probe to run, or the result once the recorded ``probes`` settle it.

    ``order``: the workers in merge order; ``failed``: the required checks that failed on the
    merged result, in configured order. Raises :class:`IsolationMismatch` when a recorded probe
    is not what the search asks for (or comes after the result).
    """
    bound = default_max_runs(len(order)) if max_runs is None else max_runs
    search = _search(list(order), depends_on, list(failed), bound)
    asked = next(search)
    for i, probe in enumerate(probes):
        if not isinstance(asked, dict) or "step" not in asked:
            raise IsolationMismatch(i, None, probe)
        if (probe["step"], list(probe["workers"])) != (asked["step"], asked["workers"]) or sorted(
            probe["passed"]
        ) != sorted(asked["checks"]):
            raise IsolationMismatch(i, asked, probe)
        failing = {c for c, ok in probe["passed"].items() if not ok}
        try:
            asked = search.send(failing)
        except StopIteration as done:
            result: Result = done.value
            if i + 1 < len(probes):
                raise IsolationMismatch(i + 1, None, probes[i + 1]) from None
            return result
    return asked


def is_result(answer: Ask | Result) -> bool:
    return "runs" in answer


# -- the search -------------------------------------------------------------------------------------
Search = Generator[Ask, set[str], Result]


def _search(
    order: list[str], deps: Mapping[str, Sequence[str]], failed: list[str], bound: int
) -> Search:
    found = _Found()
    out = yield {"step": "rerun", "workers": list(order), "checks": list(failed)}
    found.flaky = [c for c in failed if c not in out]
    targets = [c for c in failed if c in out]
    if not targets:
        return found.result(0, False)
    closure = {w: _closure(w, order, deps) for w in order}
    alone: dict[str, set[str]] = {}
    runs = 0
    if len(order) == 1:
        alone[order[0]] = set(targets)  # the merged result was this worker alone: not retested
    for w in order if len(order) > 1 else ():
        if runs >= bound:  # a check every worker probed fails may be the base's: unnamed
            some_pass = [c for c in targets if any(c not in f for f in alone.values())]
            return found.culprits_from(alone, closure, some_pass).result(runs, True)
        out = yield {"step": "alone", "workers": closure[w], "checks": targets}
        runs += 1
        alone[w] = out & set(targets)
    everyone = [c for c in targets if all(c in alone[w] for w in order)]
    if everyone:  # failing whoever is applied: does the base itself fail it?
        if runs >= bound:  # what was found of the other checks stands
            others = [c for c in targets if c not in everyone]
            return found.culprits_from(alone, closure, others).result(runs, True)
        out = yield {"step": "base", "workers": [], "checks": everyone}
        runs += 1
        found.base = [c for c in everyone if c in out]
        targets = [c for c in targets if c not in found.base]
        alone = {w: f - set(found.base) for w, f in alone.items()}
        if not targets:
            return found.result(runs, False)
    found.culprits_from(alone, closure, targets)
    rest = [w for w in order if not any(alone[d] for d in closure[w])]
    if len(rest) < 2:
        return found.result(runs, False)
    evidence = set(targets)
    if len(rest) < len(order):
        if runs >= bound:
            return found.result(runs, True)
        evidence = yield {"step": "bisect", "workers": rest, "checks": targets}
        runs += 1
        if not evidence:
            return found.result(runs, False)
    members: list[str] = []
    cands = rest
    lo, hi = 1, len(cands)  # prefix 1 passes (alone), the whole rest fails
    while True:
        while hi - lo > 1:
            if runs >= bound:
                return found.result(runs, True)
            mid = _mid(len(members), lo, hi)
            chosen = set(members) | set(cands[:mid])
            ask = [w for w in order if w in chosen or any(w in closure[m] for m in chosen)]
            out = yield {"step": "bisect", "workers": ask, "checks": targets}
            runs += 1
            if out:
                hi, evidence = mid, out
            else:
                lo = mid
        if hi > 0:
            members.append(cands[hi - 1])
            cands = cands[: hi - 1]
        if hi == 0 or not cands:  # the members alone are known to fail
            names = sorted(members)
            found.interactions += [{"workers": names, "check": c} for c in targets if c in evidence]
            return found.result(runs, False)
        lo, hi = (0 if len(members) == 1 else -1), len(cands)


class _Found:
    def __init__(self) -> None:
        self.culprits: list[Culprit] = []
        self.interactions: list[Interaction] = []
        self.flaky: list[str] = []
        self.base: list[str] = []

    def culprits_from(
        self, alone: Mapping[str, set[str]], closure: Mapping[str, list[str]], targets: list[str]
    ) -> _Found:
        """A worker failing alone is a culprit unless a dependency of it failed alone too."""
        self.culprits = [
            {"worker": w, "check": c, "how": "alone"}
            for w in sorted(alone)
            if not any(alone.get(d) for d in closure[w] if d != w)
            for c in targets
            if c in alone[w]
        ]
        return self

    def result(self, runs: int, exhausted: bool) -> Result:
        return {
            "culprits": self.culprits,
            "interactions": sorted(self.interactions, key=lambda i: (i["workers"], i["check"])),
            "flaky": self.flaky,
            "base": self.base,
            "runs": runs,
            "exhausted": exhausted,
        }


def _closure(worker: str, order: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[str]:
    """The worker and its declared dependencies (transitively, within this integration), in
    merge order."""
    seen = {worker}
    todo = [worker]
    while todo:
        for d in deps.get(todo.pop(), []):
            if d in order and d not in seen:
                seen.add(d)
                todo.append(d)
    return [w for w in order if w in seen]


# -- where to split: the cheapest worst case for a pair (prefix lengths lo < mid < hi) -------------
def _mid(members: int, lo: int, hi: int) -> int:
    if members == 0:
        return _best(lo, hi, _pair_cost)
    if members == 1:
        return _best(lo, hi, _partner_cost)
    return 0 if lo < 0 else (lo + hi) // 2  # a set known to fail may be the members alone


def _best(lo: int, hi: int, cost: Callable[[int, int], int]) -> int:
    centre = (lo + hi) / 2
    return min(range(lo + 1, hi), key=lambda m: (max(cost(lo, m), cost(m, hi)), abs(m - centre), m))


@functools.cache
def _partner_cost(lo: int, hi: int) -> int:
    """Probes left to name one member's partner, the smallest failing prefix in (lo, hi]: a
    partner past the first needs one more probe (the pair alone) to rule out a third member."""
    if hi - lo == 1:
        return 0 if hi == 1 else 1
    return 1 + min(max(_partner_cost(lo, m), _partner_cost(m, hi)) for m in range(lo + 1, hi))


@functools.cache
def _pair_cost(lo: int, hi: int) -> int:
    """Probes left to name a pair whose later member ends the smallest failing prefix in
    (lo, hi], then its partner."""
    if hi - lo == 1:
        return _partner_cost(0, hi - 1)
    return 1 + min(max(_pair_cost(lo, m), _pair_cost(m, hi)) for m in range(lo + 1, hi))
