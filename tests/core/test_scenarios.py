"""The scenario format, parsed as markdown: the seed's example, fences holding headings, CRLF,
clear errors naming file and line, and round trips (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.codex.factory.core.scenarios import Scenario, ScenarioError, parse, render, scenario_id

SEED = b"""# Scenario: Environment resets cleanly

## Category
environment

## Preconditions
- the package is installed

## Behavioral Expectation
Resetting the environment returns an observation of the documented shape.

## Evaluation Method
```bash
python -c "from app import env; assert env.reset().shape == (4,)"
```

## Pass Criteria
The command exits 0.

## Evidence Required
- stdout and stderr of the command
"""


def test_the_seed_example_parses() -> None:
    s = parse("scenarios/env_reset.md", SEED)
    assert s.name == "Environment resets cleanly"
    assert s.category == "environment"
    assert s.language == "bash"
    assert s.code == 'python -c "from app import env; assert env.reset().shape == (4,)"\n'
    assert s.pass_criteria == "The command exits 0."
    assert s.preconditions == "- the package is installed"
    assert s.id == scenario_id("scenarios/env_reset.md") and s.id.startswith("S-")
    assert s.canaries == ()


def test_crlf_and_a_bom_parse_the_same() -> None:
    crlf = b"\xef\xbb\xbf" + SEED.replace(b"\n", b"\r\n")
    a, b = parse("s.md", SEED), parse("s.md", crlf)
    assert (a.name, a.code, a.expectation, a.pass_criteria) == (
        b.name,
        b.code,
        b.expectation,
        b.pass_criteria,
    )


def test_a_heading_inside_a_fence_is_code() -> None:
    doc = SEED.replace(
        b'```bash\npython -c "from app import env; assert env.reset().shape == (4,)"\n```',
        b"````sh\n## Pass Criteria\n```\nnot a fence end\n```\necho ok\n````",
    )
    s = parse("s.md", doc)
    assert s.code == "## Pass Criteria\n```\nnot a fence end\n```\necho ok\n"
    assert s.pass_criteria == "The command exits 0."


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("", "bash"),
        ("sh", "bash"),
        ("pwsh", "powershell"),
        ("PowerShell", "powershell"),
        ("python", "python"),
    ],
)
def test_the_fence_language_picks_the_interpreter(lang: str, expected: str) -> None:
    doc = SEED.replace(b"```bash", b"```" + lang.encode())
    assert parse("s.md", doc).language == expected


def test_canary_tokens_are_collected() -> None:
    doc = SEED.replace(b"The command exits 0.", b"The command exits 0. <!-- canary: ZEBRA-7f3 -->")
    assert parse("s.md", doc).canaries == ("ZEBRA-7f3",)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            (b"# Scenario: Environment resets cleanly\n", b""),
            "line 2: a section before the '# Scenario: <name>' title",
        ),
        ((b"## Category\nenvironment\n", b""), "the '## Category' section is missing"),
        (
            (b"## Pass Criteria\nThe command exits 0.\n", b""),
            "the '## Pass Criteria' section is missing",
        ),
        ((b"```bash", b"```ruby"), "line 13: code fence language 'ruby' is not one of"),
        (
            (
                b'```bash\npython -c "from app import env; assert env.reset().shape == (4,)"\n```\n',
                b"no code here\n",
            ),
            "line 12: '## Evaluation Method' must hold exactly one fenced code block (found 0)",
        ),
        ((b"\n```\n\n## Pass", b"\n\n## Pass"), "line 13: a code fence is never closed"),
        (
            (b"## Category\nenvironment\n", b"## Category\n\n"),
            "line 3: '## Category' names no category",
        ),
        ((b"## Evidence Required", b"## Category"), "section 'Category' appears twice"),
    ],
)
def test_an_unusable_scenario_is_a_clear_error(edit: tuple[bytes, bytes], message: str) -> None:
    doc = SEED.replace(*edit)
    assert doc != SEED
    with pytest.raises(ScenarioError) as err:
        parse("scenarios/x.md", doc)
    assert str(err.value).startswith("scenario scenarios/x.md: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_utf16_is_named() -> None:
    with pytest.raises(ScenarioError, match="UTF-16 LE, not UTF-8"):
        parse("s.md", SEED.decode().encode("utf-16"))


LINE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=30
).filter(lambda t: t.strip() and not t.lstrip().startswith(("#", "`", "~")) and t == t.strip())


@settings(max_examples=80, derandomize=True, deadline=None)
@given(
    name=LINE,
    category=LINE,
    expectation=LINE,
    criteria=LINE,
    code=st.lists(
        st.text(alphabet="abc #`~$\"'-=()\\/", min_size=1, max_size=20), min_size=1, max_size=5
    ),
    language=st.sampled_from(["bash", "powershell", "python"]),
    crlf=st.booleans(),
)
def test_render_then_parse_round_trips(
    name: str,
    category: str,
    expectation: str,
    criteria: str,
    code: list[str],
    language: str,
    crlf: bool,
) -> None:
    body = "\n".join(code) + "\n"
    if not body.strip():
        body = "echo ok\n"
    s = Scenario(
        id=scenario_id("scenarios/r.md"), path="scenarios/r.md", sha256="", name=name,
        category=category, preconditions="", expectation=expectation, language=language,
        code=body, pass_criteria=criteria, evidence="", canaries=(),
    )  # fmt: skip
    text = render(s).encode()
    back = parse("scenarios/r.md", text.replace(b"\n", b"\r\n") if crlf else text)
    assert (back.name, back.category, back.expectation, back.language, back.pass_criteria) == (
        name,
        category,
        expectation,
        language,
        criteria,
    )
    assert back.code.replace("\r", "") == body.replace("\r", "")
