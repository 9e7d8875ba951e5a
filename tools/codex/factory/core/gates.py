"""Approval gates: where the crank pauses for the operator. Three gates -- ``spec`` (is this the
right thing to build?), ``plan`` (the right way to build it?), ``ship`` (ready to ship?) -- each
``auto`` (go on, logged), ``review`` (wait for approval) or ``skip`` (leave the stage out).

Settings come written out (``spec=auto,plan=review,ship=review``) or as an answer in words
("let me review the plan, rest is auto"). Words are read conservatively: a negation, an
exception or a gate left unsaid gives no settings (None), and the crank asks again rather than
guess. Proactive escalation (:mod:`core.escalation`) pauses the crank whatever the gates say.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import cast

from tools.codex.factory.core.text import clip, one_line
from tools.codex.factory.errors import UsageError
from tools.codex.factory.records.manifest import GateMode, Gates

GATES = ("spec", "plan", "ship")
GATE_MODES = ("auto", "review", "skip")
QUESTION = (
    "How hands-on do you want to be? The crank can pause for your review after the spec, after "
    "the plan and before shipping; each gate can be auto, review or skip "
    "(e.g. spec=auto,plan=review,ship=review, or 'let me review the plan, rest is auto')."
)

# Words that name a mode, a gate, or every gate not named otherwise.
_MODE_WORDS = {
    "auto": "auto",
    "automatic": "auto",
    "automatically": "auto",
    "autonomous": "auto",
    "autonomously": "auto",
    "autonomy": "auto",
    "autopilot": "auto",
    "review": "review",
    "reviews": "review",
    "reviewing": "review",
    "pause": "review",
    "skip": "skip",
    "skipped": "skip",
    "skipping": "skip",
}
_GATE_WORDS = {
    "spec": "spec",
    "specs": "spec",
    "specification": "spec",
    "research": "spec",
    "plan": "plan",
    "plans": "plan",
    "planning": "plan",
    "ship": "ship",
    "shipping": "ship",
    "release": "ship",
}
# A clause with one of these is not understood: the answer is asked again.
_UNSURE_WORDS = {
    "not",
    "no",
    "dont",
    "don't",
    "never",
    "without",
    "except",
    "unless",
    "nothing",
    "none",
    "maybe",
}
# Clauses meaning every gate not named runs on its own (a mid-run "just finish up"), once the
# filler words are left out.
_ALL_AUTO = {
    "no review",
    "no reviews",
    "hands off",
    "just finish",
    "just finish up",
    "finish up",
    "just finish it",
    "finish it",
    "just do it",
    "go ahead",
}
_FILLER = {"actually", "ok", "okay", "please", "so", "well", "now", "alright"}
_PULL_REQUEST = {"pr", "prs", "pull"}  # "I'll review the PR": after the crank, not a gate
_BOUNDARY = re.compile(r"[,;.!?]|\b(?:but|then)\b")


def parse(text: str, base: Gates | None = None) -> Gates:
    """``spec=auto,plan=review,ship=review`` -> Gates. Without ``base`` every gate must be
    named; with it, the gates named change and the others keep ``base``'s modes."""
    found: dict[str, GateMode] = {}
    for part in text.split(","):
        item = part.strip()
        gate, eq, mode = (s.strip().lower() for s in item.partition("="))
        if not eq:
            raise _bad(text, item, "write gate=mode, e.g. plan=review")
        if gate not in GATES:
            raise _bad(text, item, f"gate {_show(gate)} is not spec, plan or ship")
        if mode not in GATE_MODES:
            raise _bad(text, item, f"mode {_show(mode)} is not auto, review or skip")
        if gate in found:
            raise _bad(text, item, f"gate {gate!r} is given twice")
        found[gate] = cast(GateMode, mode)
    missing = [g for g in GATES if g not in found]
    if missing and base is None:
        raise UsageError(
            f"gates {_show(text)}: no mode for {', '.join(missing)}; name all three, e.g. "
            "spec=auto,plan=review,ship=review"
        )
    return _gates(found, base)


def _bad(text: str, part: str, why: str) -> UsageError:
    if not part:
        return UsageError(f"gates {_show(text)}: an empty part; separate gate=mode pairs by commas")
    return UsageError(f"gates {_show(text)}: part {_show(part)}: {why}")


def _show(value: str) -> str:
    return repr(clip(one_line(value), 80))


def _gates(found: Mapping[str, GateMode], base: Gates | None) -> Gates:
    def mode(gate: str) -> GateMode:
        if gate in found:
            return found[gate]
        assert base is not None
        return cast(GateMode, getattr(base, gate))

    return Gates(spec=mode("spec"), plan=mode("plan"), ship=mode("ship"))


def describe(gates: Gates) -> str:
    """``spec: auto, plan: review, ship: auto`` (what the crank confirms and records)."""
    return ", ".join(f"{g}: {getattr(gates, g)}" for g in GATES)


def as_dict(gates: Gates) -> dict[str, str]:
    """The gates as a record holds them."""
    return {g: getattr(gates, g) for g in GATES}


def interpret(answer: str, current: Gates | None = None) -> Gates | None:
    """The gates an answer in words asks for, or None when it is not clearly understood.

    The answer is cut into clauses (at punctuation, "but", "then"; at "and" when both sides
    name a mode). A clause naming a mode and gates sets those gates; one naming a mode and no
    gate ("rest is auto", "full autonomy") sets every gate not named elsewhere. Mid-run
    (``current`` given), gates the answer leaves out keep their modes; at the start every gate
    must end up set."""
    words = _words(answer)
    if not words:
        return None
    try:
        return parse(answer, current)
    except UsageError:
        pass
    named: dict[str, GateMode] = {}
    default: GateMode | None = None
    for clause in _clauses(answer):
        got = _clause(clause)
        if got is None:
            return None
        mode, gates = got
        if mode is None:
            continue
        if not gates:
            if default is not None and default != mode:
                return None
            default = mode
        for gate in gates:
            if named.get(gate, mode) != mode:
                return None
            named[gate] = mode
    if not named and default is None:
        return None
    return _fill(named, default, current)


def _fill(
    named: Mapping[str, GateMode], default: GateMode | None, current: Gates | None
) -> Gates | None:
    out: dict[str, GateMode] = dict(named)
    for gate in GATES:
        if gate in out:
            continue
        if default is not None:
            out[gate] = default
        elif current is not None:
            out[gate] = cast(GateMode, getattr(current, gate))
        else:
            return None
    return _gates(out, None)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower().replace("\u2019", "'"))


def _clauses(answer: str) -> list[list[str]]:
    """The answer's clauses as word lists; "and" splits a clause only between two modes (so
    "review the spec and the plan" stays one)."""
    out: list[list[str]] = []
    for piece in _BOUNDARY.split(answer.lower()):
        words = _words(piece)
        parts: list[list[str]] = [[]]
        for w in words:
            if w == "and":
                parts.append([])
            else:
                parts[-1].append(w)
        merged: list[list[str]] = []
        for part in parts:
            if merged and not any(w in _MODE_WORDS for w in part):
                merged[-1].extend(part)
            else:
                merged.append(part)
        if merged and not any(w in _MODE_WORDS for w in merged[0]) and len(merged) > 1:
            merged[1] = merged[0] + merged[1]
            merged.pop(0)
        out.extend(m for m in merged if m)
    return out


def _clause(words: list[str]) -> tuple[GateMode | None, list[str]] | None:
    """(mode, gates named) of one clause; (None, []) for a clause that says nothing about the
    gates; None when it cannot be read safely (a negation, two modes, gates without a mode)."""
    if " ".join(w for w in words if w not in _FILLER) in _ALL_AUTO:
        return "auto", []
    if any(w in _UNSURE_WORDS for w in words):
        return None
    if any(w in _PULL_REQUEST for w in words):
        return (None, [])
    modes = {_MODE_WORDS[w] for w in words if w in _MODE_WORDS}
    gates = list(dict.fromkeys(_GATE_WORDS[w] for w in words if w in _GATE_WORDS))
    if len(modes) > 1:
        return None
    if not modes:
        return None if gates else (None, [])
    mode = cast(GateMode, modes.pop())
    if gates and any(w in ("rest", "else", "others", "remaining") for w in words):
        return None  # "the plan and the rest": say which is which
    return mode, gates
