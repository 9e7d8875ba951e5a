"""Culprit isolation's cost in check runs, beside bors' plain halving (not a test; prints figures).

For n = 2, 4, 8, 16 workers and every place of 1 culprit (then of 1 interacting pair), the pure
step function (core.isolation.step) is driven by a simulated check; the worst case over the
places is printed with the rerun counted, against the bound n + 2*ceil(log2 n) + 1 (for a pair:
the default integrate.isolate_max_runs + 1, one run more at 8 and 16 workers). Bors'
halving (a failing batch is split in two, the first half run, the second inferred when the
first passes) is run on the same cases: its runs, and how often it names exactly the planted
worker(s). Runs are counted, not timed: a real check's duration multiplies both alike.
"""

from __future__ import annotations

import itertools
import math

import _common

from tools.codex.factory.core import isolation

IDS = [chr(ord("A") + i) for i in range(16)]


def ours(order: list[str], bad: set[str], together: bool) -> tuple[int, bool]:
    """(check runs including the rerun, named exactly the planted set)."""

    def fails(workers: list[str]) -> bool:
        return bad <= set(workers) if together else bool(bad & set(workers))

    probes: list[isolation.Probe] = []
    while True:
        answer = isolation.step(order, {}, ["tests"], probes)
        if isolation.is_result(answer):
            found: isolation.Result = answer  # type: ignore[assignment]
            break
        ask: isolation.Ask = answer  # type: ignore[assignment]
        ok = not fails(ask["workers"])
        probes.append({"step": ask["step"], "workers": ask["workers"], "passed": {"tests": ok}})
    named = (
        {w for i in found["interactions"] for w in i["workers"]}
        if together
        else {c["worker"] for c in found["culprits"]}
    )
    return len(probes), named == bad


def bors(order: list[str], bad: set[str], together: bool) -> tuple[int, bool]:
    """Bors' halving of a failing batch: run the first half; if it passes, blame the second
    (inferred, not run) and go on in it, down to one worker."""

    def fails(workers: list[str]) -> bool:
        return bad <= set(workers) if together else bool(bad & set(workers))

    batch, runs = list(order), 0
    while len(batch) > 1:
        half = batch[: len(batch) // 2]
        runs += 1
        batch = half if fails(half) else batch[len(half) :]
    return runs, set(batch) == bad  # one worker blamed: never a pair


def row(n: int, together: bool) -> str:
    order = IDS[:n]
    cases = [set(c) for c in itertools.combinations(order, 2 if together else 1)]
    if together and not cases:
        return ""
    mine = [ours(order, c, together) for c in cases]
    theirs = [bors(order, c, together) for c in cases]
    worst = max(r for r, _ in mine)
    # The bound for one culprit; a pair gets the default isolate_max_runs (+ the rerun),
    # one more than that formula at 8 and 16 workers.
    bound = (isolation.default_max_runs(n) if together else n + 2 * math.ceil(math.log2(n))) + 1
    right = sum(ok for _, ok in mine)
    bors_right = sum(ok for _, ok in theirs)
    label = "pair" if together else "culprit"
    return (
        f"{n:>3}  {label:<8} {len(cases):>6}  ours worst {worst:>3} runs, named {right}/{len(cases)}"
        f"  | bors worst {max(r for r, _ in theirs):>2} runs, named {bors_right}/{len(cases)}"
        f"  | {_common.verdict('ours', worst, bound, higher_is_better=False)}"
    )


def main() -> None:
    print(_common.env_line())
    print("  n  planted   cases  (runs include the rerun; target: n + 2*ceil(log2 n) + 1 for a")
    print("                     culprit, isolate_max_runs' default + 1 for a pair)")
    for together in (False, True):
        for n in (2, 4, 8, 16):
            line = row(n, together)
            if line:
                print(line)


if __name__ == "__main__":
    main()
