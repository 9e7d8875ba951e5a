"""Approval gates: written settings with one-line errors naming the bad part, answers in words
read into settings (a table), conservative refusals (None: ask again), and the description the
crank confirms."""

from __future__ import annotations

import pytest

from tools.codex.factory.core import gates
from tools.codex.factory.errors import UsageError
from tools.codex.factory.records.manifest import Gates

A, R, S = "auto", "review", "skip"


def test_written_settings_parse_and_describe() -> None:
    g = gates.parse("spec=auto,plan=review,ship=review")
    assert g == Gates(spec="auto", plan="review", ship="review")
    assert gates.describe(g) == "spec: auto, plan: review, ship: review"
    assert gates.as_dict(g) == {"spec": "auto", "plan": "review", "ship": "review"}
    assert gates.parse(" Ship = SKIP , spec=auto,plan=review ") == Gates("auto", "review", "skip")
    assert gates.parse("plan=skip", Gates("auto", "review", "review")) == Gates(
        "auto", "skip", "review"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "spec=auto,plan=revue,ship=auto",
            "gates 'spec=auto,plan=revue,ship=auto': part 'plan=revue': mode 'revue' is not "
            "auto, review or skip",
        ),
        (
            "spec=auto,deploy=auto",
            "gates 'spec=auto,deploy=auto': part 'deploy=auto': gate 'deploy' is not spec, plan "
            "or ship",
        ),
        (
            "spec=auto,spec=skip",
            "gates 'spec=auto,spec=skip': part 'spec=skip': gate 'spec' is given twice",
        ),
        (
            "spec=auto,plan",
            "gates 'spec=auto,plan': part 'plan': write gate=mode, e.g. plan=review",
        ),
        (
            "spec=auto,,ship=auto",
            "gates 'spec=auto,,ship=auto': an empty part; separate gate=mode pairs by commas",
        ),
        (
            "plan=review",
            "gates 'plan=review': no mode for spec, ship; name all three, e.g. "
            "spec=auto,plan=review,ship=review",
        ),
    ],
)
def test_bad_settings_are_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        gates.parse(text)
    assert str(info.value) == message


ANSWERS = [
    # the seed's answers
    ("full autonomy", (A, A, A)),
    ("review everything", (R, R, R)),
    ("let me review the plan, rest is auto", (A, R, A)),
    ("Actually, just finish up, I'll review the PR", (A, A, A)),
    # variants
    ("Full autonomy please.", (A, A, A)),
    ("fully autonomous", (A, A, A)),
    ("auto", (A, A, A)),
    ("all auto", (A, A, A)),
    ("autopilot", (A, A, A)),
    ("no reviews", (A, A, A)),
    ("hands off", (A, A, A)),
    ("review", (R, R, R)),
    ("Review all gates", (R, R, R)),
    ("pause at every gate", (R, R, R)),
    ("I want to review the plan; the rest can run automatically", (A, R, A)),
    ("review the plan, everything else auto", (A, R, A)),
    ("review the plan and the rest auto", (A, R, A)),
    ("Let me review the plan but the rest is auto", (A, R, A)),
    ("review the spec and the plan, ship auto", (R, R, A)),
    ("review the spec and plan, auto for shipping", (R, R, A)),
    ("skip the spec and review the rest", (S, R, R)),
    ("skip research, review the plan, auto ship", (S, R, A)),
    ("spec=auto,plan=review,ship=auto", (A, R, A)),
    ("approve and go auto for the rest", (A, A, A)),
    # not understood: ask again
    ("", None),
    ("yes", None),
    ("sounds good", None),
    ("review the plan", None),  # spec and ship unsaid
    ("don't review the plan, auto otherwise", None),
    ("no review of the plan", None),
    ("review everything except the ship", None),
    ("review the plan and the rest", None),  # which mode for the rest?
    ("review the plan auto the ship", None),  # two modes in one clause
    ("review everything, auto", None),  # two modes for every gate
    ("review the plan, auto the plan", None),  # the plan twice
    ("the plan", None),
]


@pytest.mark.parametrize(("answer", "expected"), ANSWERS)
def test_answers_in_words(answer: str, expected: tuple[str, str, str] | None) -> None:
    got = gates.interpret(answer)
    assert (None if got is None else (got.spec, got.plan, got.ship)) == expected


def test_a_mid_run_answer_keeps_the_gates_it_leaves_out() -> None:
    now = Gates("review", "review", "review")
    assert gates.interpret("review the plan, skip the ship", now) == Gates(
        "review", "review", "skip"
    )
    assert gates.interpret("auto the ship", now) == Gates("review", "review", "auto")
    assert gates.interpret("just finish up", now) == Gates("auto", "auto", "auto")
    assert gates.interpret("ship=skip", now) == Gates("review", "review", "skip")
    assert gates.interpret("never mind", now) is None


def test_the_question_offers_forms_that_are_understood() -> None:
    assert all(g in gates.QUESTION for g in gates.GATES + gates.GATE_MODES)
    written = "spec=auto,plan=review,ship=review"
    assert written in gates.QUESTION and gates.parse(written) == Gates("auto", "review", "review")
    words = "let me review the plan, rest is auto"
    assert f"'{words}'" in gates.QUESTION and gates.interpret(words) is not None
