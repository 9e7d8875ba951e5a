"""Crank manifests: the seed's lines parse, every rule refuses a bad manifest with one line
(file, line, rule), CRLF and BOM read the same, the JSON form agrees with the markdown one, unit
scopes parse, and writing progress back changes only the checkboxes and the status (hypothesis
round trips)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.codex.factory.core import manifest as mf
from tools.codex.factory.core.manifest import ManifestError
from tools.codex.factory.errors import UsageError
from tools.codex.factory.infra import schemas
from tools.codex.factory.records.manifest import Group, Manifest, Unit, UnitScope

HEAD = "---\ntitle: Checkout\nstatus: pending\nthreshold: 0.90\nmax_iterations: 5\n---\n"
SEED = (
    HEAD
    + "# Checkout\n\n"
    + "## Units\n\n"
    + "- [ ] ve1: Cart model — no dependencies\n"
    + "- [x] ve2: Cart API — after: ve1, ve3\n"
    + "- [ ] ve3: Prices - with tax -- no dependencies\n"
    + "\n## Execution Order\n\n"
    + "Group 1 (parallel): ve1, ve3\n"
    + "Group 2 (sequential): ve2\n"
)


def parse(text: str, source: str = "manifest.md") -> Manifest:
    return mf.parse(text.encode("utf-8"), source)


def refusal(text: str) -> str:
    with pytest.raises(ManifestError) as info:
        parse(text)
    assert "\n" not in str(info.value)
    return str(info.value)


def body(units: str, order: str, head: str = HEAD) -> str:
    """A manifest: the frontmatter on lines 1-6, '## Units' on line 7, units from line 8."""
    return f"{head}## Units\n{units}## Execution Order\n{order}"


def test_the_seeds_lines_parse() -> None:
    m = parse(SEED)
    assert m == Manifest(
        title="Checkout",
        status="pending",
        threshold=(9, 10),
        max_iterations=5,
        units=(
            Unit("ve1", "Cart model", False, ()),
            Unit("ve2", "Cart API", True, ("ve1", "ve3")),
            Unit("ve3", "Prices - with tax", False, ()),
        ),
        groups=(Group(1, "parallel", ("ve1", "ve3")), Group(2, "sequential", ("ve2",))),
    )


def test_defaults_list_items_and_prose_around_the_lines() -> None:
    text = (
        "---\ntitle: 'It''s a #1 feature'  # comment\nstatus: \"in_progress\"\n---\n"
        "Intro. Groups execute in ascending order.\n## UNITS ##\n"
        "Prose about units.\n* [X] ab1: One\u2014no dependencies\n"
        "```\n- [ ] not a unit\n## Execution Order\n```\n"
        "### Execution order\n- group 1 (Sequential): ab1\n"
    )
    m = parse(text)
    assert (m.title, m.status, m.threshold, m.max_iterations) == (
        "It's a #1 feature",
        "in_progress",
        (9, 10),
        5,
    )
    assert m.units == (Unit("ab1", "One", True, ()),)
    assert m.groups == (Group(1, "sequential", ("ab1",)),)


def test_a_deeper_heading_stays_in_its_section() -> None:
    text = (
        HEAD + "## Units\n### Backend\n- [ ] ve1: A — no dependencies\n### Frontend\n"
        "- [ ] ve2: B — after: ve1\n## Notes\n- [ ] not a unit at all\n"
        "## Execution Order\n#### Phase one\nGroup 1 (parallel): ve1\nGroup 2 (parallel): ve2\n"
    )
    m = parse(text)
    assert [u.id for u in m.units] == ["ve1", "ve2"] and len(m.groups) == 2


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1))
def test_a_quoted_title_reads_back_exactly(title: str) -> None:
    single = "'" + title.replace("'", "''") + "'"
    double = '"' + title.replace("\\", "\\\\").replace('"', '\\"') + '"'
    for quoted in (single, double):
        text = body("- [ ] a: A — no dependencies\n", "Group 1 (parallel): a\n")
        text = text.replace("title: Checkout", f"title: {quoted}")
        if title.strip():
            assert parse(text).title == title
        else:
            assert refusal(text) == "manifest.md: line 2: the title is empty [title]"


def test_crlf_and_a_bom_read_the_same() -> None:
    crlf = b"\xef\xbb\xbf" + SEED.replace("\n", "\r\n").encode("utf-8")
    assert mf.parse(crlf, "m.md") == parse(SEED)


def test_utf16_and_bad_utf8_are_refused_in_one_line() -> None:
    with pytest.raises(ManifestError, match=r"^m.md: the file is UTF-16 LE, not UTF-8"):
        mf.parse(SEED.encode("utf-16-le"), "m.md")
    with pytest.raises(ManifestError, match=r"^m.md: byte 4 is not UTF-8"):
        mf.parse(b"---\n\xff", "m.md")
    with pytest.raises(ManifestError, match=r"^m.md: 262145 bytes; the limit is 262144 \[size\]$"):
        mf.parse(b"-" * (256 * 1024 + 1), "m.md")


GOOD_UNITS = "- [ ] ve1: A — no dependencies\n- [ ] ve2: B — after: ve1\n"
GOOD_ORDER = "Group 1 (parallel): ve1\nGroup 2 (sequential): ve2\n"

# (units, order, the one line) -- units start on line 8, the order on line 9 + len(units).
RULES = [
    (
        GOOD_UNITS,
        "Group 1 (parallel): ve1, ve9\nGroup 2 (sequential): ve2\n",
        "manifest.md: line 11: Group 1 lists 've9', which is not a unit of this manifest "
        "[unknown-unit]",
    ),
    (
        GOOD_UNITS + "- [ ] ve3: C — no dependencies\n",
        GOOD_ORDER,
        "manifest.md: line 10: unit 've3' is in no group of the execution order [unassigned-unit]",
    ),
    (
        GOOD_UNITS,
        "Group 1 (parallel): ve1\nGroup 2 (sequential): ve2, ve1\n",
        "manifest.md: line 12: unit 've1' is in Group 1 and Group 2: a unit belongs to exactly "
        "one group [duplicate-group-unit]",
    ),
    (
        GOOD_UNITS,
        "Group 1 (parallel): ve1, ve1\nGroup 2 (sequential): ve2\n",
        "manifest.md: line 11: unit 've1' is twice in this group: a unit belongs to exactly "
        "one group [duplicate-group-unit]",
    ),
    (
        GOOD_UNITS,
        "Group 1 (parallel): ve1, ve2\n",
        "manifest.md: line 9: unit 've2' (Group 1) depends on 've1' (Group 1): a dependency "
        "must be in an earlier group [dependency-order]",
    ),
    (
        GOOD_UNITS,
        "Group 1 (parallel): ve2\nGroup 2 (sequential): ve1\n",
        "manifest.md: line 9: unit 've2' (Group 1) depends on 've1' (Group 2): a dependency "
        "must be in an earlier group [dependency-order]",
    ),
    (
        "- [ ] ve1: A — after: ve2\n- [ ] ve2: B — after: ve1\n",
        GOOD_ORDER,
        "manifest.md: line 8: dependency cycle ve1 -> ve2 -> ve1 [cycle] (and 1 more)",
    ),
    (
        "- [ ] ve1: A — after: ve1\n- [ ] ve2: B — after: ve1\n",
        GOOD_ORDER,
        "manifest.md: line 8: dependency cycle ve1 -> ve1 [cycle] (and 1 more)",
    ),
    (
        GOOD_UNITS + "- [ ] ve1: Again — no dependencies\n",
        GOOD_ORDER,
        "manifest.md: line 10: unit 've1' is listed twice (first at line 8) [duplicate-unit]",
    ),
    (
        "- [ ] VE1: A — no dependencies\n- [ ] ve2: B — no dependencies\n",
        "Group 1 (parallel): ve2\n",
        "manifest.md: line 8: unit ID 'VE1': a unit ID is a lowercase letter then up to 14 "
        "lowercase letters or digits [unit-id]",
    ),
    (
        "- [ ] ve1: A — no dependencies\n- [ ] ve2: B — after: ve7\n",
        GOOD_ORDER,
        "manifest.md: line 9: unit 've2' depends on 've7', which is not a unit of this "
        "manifest [unknown-dependency]",
    ),
    (
        "- [ ] ve1: A — no dependencies\n- [ ] ve2: B — after: ve1, ve1\n",
        GOOD_ORDER,
        "manifest.md: line 9: unit 've2' names 've1' twice after 'after:' [duplicate-dependency]",
    ),
    (
        "- [ ] ve1: A — no dependencies\n- [ ] ve2: B — no dependencies\n",
        "Group 1 (parallel): ve1\nGroup 1 (sequential): ve2, ve1\n",
        "manifest.md: line 12: Group 1 should be Group 2: number the groups 1, 2, 3, ... in "
        "order [group-number] (and 1 more)",
    ),
    (
        GOOD_UNITS,
        "Group 1 (parallel): ve1\nGroup 3 (sequential): ve2\n",
        "manifest.md: line 12: Group 3 should be Group 2: number the groups 1, 2, 3, ... in "
        "order [group-number]",
    ),
    (
        "- [ ] ve1: A — no dependencies\n- [ ] ve2: B — no dependencies\n",
        "Group 2 (parallel): ve1\nGroup 1 (sequential): ve2\n",
        "manifest.md: line 11: Group 2 should be Group 1: number the groups 1, 2, 3, ... in "
        "order [group-number] (and 1 more)",
    ),
    (
        "- [ ] ve1 A — no dependencies\n",
        GOOD_ORDER,
        "manifest.md: line 8: '- [ ] ve1 A — no dependencies' is not '- [ ] <id>: <title> — "
        "no dependencies' or '- [ ] <id>: <title> — after: <id>, <id>' [unit-line]",
    ),
    (
        "- [ ] ve1: A\n",
        GOOD_ORDER,
        "manifest.md: line 8: '- [ ] ve1: A' is not '- [ ] <id>: <title> — no dependencies' "
        "or '- [ ] <id>: <title> — after: <id>, <id>' [unit-line]",
    ),
    (
        "- [ ] ve1: A — after: ve2,\n",
        GOOD_ORDER,
        "manifest.md: line 8: 'after:' needs unit IDs separated by commas [unit-line]",
    ),
    (
        "- [?] ve1: A — no dependencies\n",
        GOOD_ORDER,
        "manifest.md: line 8: '- [?] ve1: A — no dependencies' is not '- [ ] <id>: <title> — "
        "no dependencies' or '- [ ] <id>: <title> — after: <id>, <id>' [unit-line]",
    ),
    (
        GOOD_UNITS,
        "Group 1 (concurrent): ve1\n",
        "manifest.md: line 11: mode 'concurrent' is not parallel or sequential [group-mode]",
    ),
    (
        GOOD_UNITS,
        "Group 1: ve1\n",
        "manifest.md: line 11: 'Group 1: ve1' is not 'Group <N> (parallel|sequential): <id>, "
        "<id>' [group-line]",
    ),
    (
        GOOD_UNITS,
        "Group 1 (parallel):\n",
        "manifest.md: line 11: Group 1 needs unit IDs separated by commas [empty-group]",
    ),
    (
        "",
        "Nothing yet.\n",
        "manifest.md: units: the manifest lists no units [no-units] (and 1 more)",
    ),
    (
        GOOD_UNITS,
        "",
        "manifest.md: groups: the execution order lists no groups [no-groups] (and 2 more)",
    ),
]


@pytest.mark.parametrize(("units", "order", "message"), RULES)
def test_every_rule_refuses_with_one_line(units: str, order: str, message: str) -> None:
    assert refusal(body(units, order)) == message


def test_a_unit_in_two_groups_of_one_number_is_in_two_groups() -> None:
    with pytest.raises(ManifestError) as info:
        parse(
            body(
                GOOD_UNITS.replace("after: ve1", "no dependencies"),
                "Group 1 (parallel): ve1\nGroup 1 (sequential): ve2, ve1\n",
            )
        )
    assert info.value.problems[1] == (
        "manifest.md: line 12: unit 've1' is in Group 1 and Group 1: a unit belongs to exactly "
        "one group [duplicate-group-unit]"
    )


def test_all_problems_are_kept_in_file_order() -> None:
    with pytest.raises(ManifestError) as info:
        parse(body(GOOD_UNITS, "Group 2 (parallel): ve1\nGroup 1 (sequential): ve2\n"))
    assert [p.split(" [")[-1] for p in info.value.problems] == [
        "dependency-order]",
        "group-number]",
        "group-number]",
    ]
    assert info.value.problems[0].startswith("manifest.md: line 9: unit 've2' (Group 1)")


FRONTMATTER = [
    (
        "title: X\nstatus: pending\n",
        "## Units\n",
        "line 6: no '## Execution Order' section before the end of the file",
        "section",
    ),
    (
        "title: X\nstatus: pending\n",
        "",
        "line 5: no '## Units' section before the end of the file",
        "section",
    ),
    ("title: X\n", "", "line 1: the frontmatter has no 'status'", "status"),
    ("status: pending\n", "", "line 1: the frontmatter has no 'title'", "title"),
    ("title: ''\nstatus: pending\n", "", "line 2: the title is empty", "title"),
    (
        "title: X\nstatus: done\n",
        "",
        "line 3: status 'done' is not one of pending, in_progress, completed, failed",
        "status",
    ),
    (
        "title: X\nstatus: pending\nthreshold: 90%\n",
        "",
        "line 4: threshold '90%': give a number between 0 and 1, e.g. 0.80",
        "threshold",
    ),
    (
        "title: X\nstatus: pending\nmax_iterations: 0\n",
        "",
        "line 4: max_iterations '0' is not a whole number from 1 to 100",
        "max-iterations",
    ),
    (
        "title: X\nstatus: pending\nowner: me\n",
        "",
        "line 4: unknown key 'owner' (known: title, status, threshold, max_iterations)",
        "frontmatter",
    ),
    (
        "title: X\ntitle: Y\nstatus: pending\n",
        "",
        "line 3: key 'title' is given twice",
        "frontmatter",
    ),
    (
        "title: X\nstatus: [a, b]\n",
        "",
        "line 3: status: one value expected, not a list",
        "frontmatter",
    ),
    ("title: X\nstatus:\n", "", "line 3: status: no value", "frontmatter"),
    (
        "title: a: b\nstatus: pending\n",
        "",
        "line 2: 'a: b': quote a value holding ': '",
        "frontmatter",
    ),
    (
        "title: |\nstatus: pending\n",
        "",
        "line 2: '|': quote a value starting with '|'",
        "frontmatter",
    ),
    (
        "title: &x X\nstatus: pending\n",
        "",
        "line 2: '&x X': quote a value starting with '&'",
        "frontmatter",
    ),
    ('title: "X\nstatus: pending\n', "", 'line 2: the " quote is never closed', "frontmatter"),
    (
        'title: "X\\n"\nstatus: pending\n',
        "",
        "line 2: escape '\\n' is not understood (only \\\" and \\\\)",
        "frontmatter",
    ),
    ("title: 'X' Y\nstatus: pending\n", "", "line 2: 'Y' after the closing quote", "frontmatter"),
    ("title X\nstatus: pending\n", "", "line 2: 'title X' is not 'key: value'", "frontmatter"),
    ("  - x\nstatus: pending\n", "", "line 2: list item '- x' belongs to no key", "frontmatter"),
]


@pytest.mark.parametrize(("head", "rest", "message", "rule"), FRONTMATTER)
def test_the_frontmatter_reader_refuses_what_it_does_not_understand(
    head: str, rest: str, message: str, rule: str
) -> None:
    text = f"---\n{head}---\n{rest}"
    assert refusal(text) == f"manifest.md: {message} [{rule}]"


def test_the_frontmatter_must_open_and_close() -> None:
    assert refusal("## Units\n") == (
        "manifest.md: line 1: the file must start with a '---' line opening the frontmatter "
        "[frontmatter]"
    )
    assert refusal("---\ntitle: X\n") == (
        "manifest.md: line 1: the frontmatter opened here is never closed with a '---' line "
        "[frontmatter]"
    )


def test_a_second_units_section_is_refused() -> None:
    text = body(GOOD_UNITS, GOOD_ORDER) + "## Units\n"
    assert refusal(text) == (
        "manifest.md: line 13: a second 'Units' section (the first is on line 7) [section]"
    )


def test_the_json_form_agrees_and_names_json_paths() -> None:
    m = parse(SEED)
    doc = mf.to_doc(m)
    assert schemas.errors("crank_manifest", doc) == []
    assert doc["threshold"] == "0.9"
    assert mf.from_doc(doc, "m.json") == m
    bad = mf.to_doc(m)
    bad["groups"][1]["units"] = ["ve2", "ve3"]
    with pytest.raises(ManifestError) as info:
        mf.from_doc(bad, "m.json")
    assert str(info.value) == (
        "m.json: groups[1]: unit 've3' is in Group 1 and Group 2: a unit belongs to exactly one "
        "group [duplicate-group-unit]"
    )
    bad = mf.to_doc(m)
    bad["threshold"] = "1.5"
    with pytest.raises(ManifestError, match=r"^m.json: threshold: threshold '1.5': give"):
        mf.from_doc(bad, "m.json")
    bad = mf.to_doc(m)
    bad["units"][0]["id"] = "VE1"
    assert ("units[0].id", "'VE1' does not match '^[a-z][a-z0-9]{0,14}$'") in schemas.errors(
        "crank_manifest", bad
    )


def test_unit_ids_map_to_worker_ids_and_back() -> None:
    assert mf.worker_id("ve1") == "Uve1"
    assert mf.unit_of("Uve1") == "ve1"
    for uid in ("a", "ve1", "z" + "9" * 14):
        assert mf.unit_of(mf.worker_id(uid)) == uid
    assert mf.unit_of("A") is None and mf.unit_of("U") is None and mf.unit_of("UVE1") is None
    with pytest.raises(UsageError, match="unit ID 'VE1': a unit ID is a lowercase letter"):
        mf.worker_id("VE1")


# -- unit scopes -------------------------------------------------------------------------------
def scope(text: str) -> UnitScope:
    return mf.parse_unit_scope(text.encode("utf-8"), "units/ve1.md", "ve1")


def test_a_unit_scope_in_flow_and_block_lists() -> None:
    s = scope(
        "---\nallow: [src/a/**, 'tests/a/**', \"docs/[ab].md\"]\ndeny:\n  - src/a/secret/**\n"
        "  - '**/*.pem'\nshared: []\nagent: codex\n---\n# ve1\nThe spec.\n"
    )
    assert s == UnitScope(
        "ve1",
        ("src/a/**", "tests/a/**", "docs/[ab].md"),
        ("src/a/secret/**", "**/*.pem"),
        (),
        "codex",
    )
    block = scope("---\nallow:\n- **/*.py  # every Python file\n---\n")
    assert block == UnitScope("ve1", ("**/*.py",))
    assert scope("---\nallow: src/**\n---\n").allow == ("src/**",)


def test_a_unit_scope_with_crlf_and_a_bom_reads_the_same() -> None:
    text = "---\nallow: [src/a/**]\ndeny:\n  - src/a/x/**\nagent: claude\n---\nbody\n"
    raw = b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode()
    assert mf.parse_unit_scope(raw, "units/ve1.md", "ve1") == scope(text)
    assert scope(text) == UnitScope("ve1", ("src/a/**",), ("src/a/x/**",), (), "claude")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "---\ndeny: [x/**]\n---\n",
            "line 1: 'allow' must list at least one glob, e.g. allow: [src/a/**] [scope]",
        ),
        (
            "---\nallow: []\n---\n",
            "line 2: 'allow' must list at least one glob, e.g. allow: [src/a/**] [scope]",
        ),
        (
            "---\nallow: [../x]\n---\n",
            "line 2: allow: glob '../x': '..' segment; paths are normalised [glob]",
        ),
        (
            "---\nallow: [a]\ndeny:\n  - /etc/**\n---\n",
            "line 3: deny: glob '/etc/**': absolute; patterns are relative to the repository root [glob]",
        ),
        (
            "---\nallow: [a, src/[ab]]\n---\n",
            "line 2: 'src/[ab': quote a list item holding [ { } or quotes [frontmatter]",
        ),
        ("---\nallow: [a, , b]\n---\n", "line 2: an empty item in the list [frontmatter]"),
        (
            "---\nallow: [a, b\n---\n",
            "line 2: a list must be closed with ']' on the same line [frontmatter]",
        ),
        (
            "---\nallow: [a]\nagent: ../codex\n---\n",
            "line 3: agent '../codex' is not a preset name [agent]",
        ),
        (
            "---\nallow: [a]\nagent: [a]\n---\n",
            "line 3: agent: one value expected, not a list [frontmatter]",
        ),
        (
            "---\nallow: [a]\nowner: me\n---\n",
            "line 3: unknown key 'owner' (known: allow, deny, shared, agent) [frontmatter]",
        ),
        ("---\nallow:\n  -\n---\n", "line 3: an empty list item [frontmatter]"),
    ],
)
def test_a_bad_unit_scope_is_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        scope(text)
    assert str(info.value) == f"units/ve1.md: {message}"


# -- writing progress back ---------------------------------------------------------------------
def test_render_changes_only_the_checkboxes_and_the_status() -> None:
    data = SEED.replace("status: pending", 'status: "pending"  # set by the crank').encode()
    m = mf.parse(data, "m.md")
    new = mf.mark(
        dataclasses.replace(
            m, units=(m.units[0], dataclasses.replace(m.units[1], done=False), m.units[2])
        ),
        ["ve1"],
        "in_progress",
    )
    out = mf.render(data, "m.md", new)
    assert mf.parse(out, "m.md") == new
    assert out == data.replace(b'"pending"', b'"in_progress"').replace(
        b"- [ ] ve1", b"- [x] ve1"
    ).replace(b"- [x] ve2", b"- [ ] ve2")
    assert mf.render(data, "m.md", m) == data


def test_render_refuses_any_other_change() -> None:
    data = SEED.encode()
    m = mf.parse(data, "m.md")
    with pytest.raises(UsageError, match=r"^m.md: the manifest to write differs from the file"):
        mf.render(data, "m.md", dataclasses.replace(m, title="Other"))
    with pytest.raises(ManifestError, match=r"^m.md: status: status 'done' is not one of"):
        mf.render(data, "m.md", dataclasses.replace(m, status="done"))


IDS = [f"u{k}" for k in range(8)]
DASHES = [" \u2014 ", "\u2014", " \u2013 ", " - ", " -- "]


@st.composite
def manifests(draw: st.DrawFn) -> tuple[str, Manifest]:
    """A manifest's text (varied spelling: dashes, box letters, quoting, CRLF, BOM-free) and
    the manifest it spells."""
    n = draw(st.integers(1, len(IDS)))
    ids = IDS[:n]
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
    bounds = [0, *cuts, n]
    groups = [
        Group(k + 1, draw(st.sampled_from(["parallel", "sequential"])), tuple(ids[a:b]))
        for k, (a, b) in enumerate(itertools.pairwise(bounds))
    ]
    group_of = {uid: g.number for g in groups for uid in g.units}
    units = []
    lines = []
    for uid in ids:
        earlier = [d for d in ids if group_of[d] < group_of[uid]]
        after = tuple(draw(st.lists(st.sampled_from(earlier), unique=True))) if earlier else ()
        done = draw(st.booleans())
        title = draw(st.sampled_from(["Cart", "Cart - API", "A — B", "x", "Prices (tax)"]))
        units.append(Unit(uid, title, done, after))
        box = draw(st.sampled_from(["x", "X"])) if done else " "
        clause = f"after: {', '.join(after)}" if after else "no dependencies"
        lines.append(f"- [{box}] {uid}: {title}{draw(st.sampled_from(DASHES))}{clause}")
        if draw(st.booleans()):
            lines.append("")
    status = draw(st.sampled_from(["pending", "in_progress", "completed", "failed"]))
    quote = draw(st.sampled_from(["", '"', "'"]))
    comment = draw(st.sampled_from(["", "  # kept"]))
    head = f"---\ntitle: Feature\nstatus: {quote}{status}{quote}{comment}\n---\n"
    order = [f"Group {g.number} ({g.mode}): {', '.join(g.units)}" for g in groups]
    text = head + "Intro.\n\n## Units\n" + "\n".join(lines) + "\n\n## Execution Order\n"
    text += "\n".join(order) + "\n"
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    m = Manifest("Feature", status, (9, 10), 5, tuple(units), tuple(groups))
    return text, m


@settings(derandomize=True, max_examples=150, deadline=None)
@given(manifests(), st.data())
def test_render_round_trips_and_keeps_every_other_byte(
    case: tuple[str, Manifest], data: st.DataObject
) -> None:
    text, m = case
    raw = text.encode("utf-8")
    assert mf.parse(raw, "m.md") == m
    assert schemas.errors("crank_manifest", mf.to_doc(m)) == []
    assert mf.from_doc(mf.to_doc(m), "m.json") == m
    status = data.draw(st.sampled_from(["pending", "in_progress", "completed", "failed"]))
    flips = data.draw(st.lists(st.booleans(), min_size=len(m.units), max_size=len(m.units)))
    new = dataclasses.replace(
        m,
        status=status,
        units=tuple(
            dataclasses.replace(u, done=u.done != f) for u, f in zip(m.units, flips, strict=True)
        ),
    )
    out = mf.render(raw, "m.md", new)
    assert mf.parse(out, "m.md") == new
    before, after = raw.split(b"\n"), out.split(b"\n")
    assert len(before) == len(after)
    for old, now in zip(before, after, strict=True):
        if old == now:
            continue
        if old.startswith(b"status:"):
            assert now == old.replace(m.status.encode(), status.encode(), 1)
            continue
        assert len(old) == len(now)
        diff = [k for k in range(len(old)) if old[k] != now[k]]
        assert len(diff) == 1 and old[diff[0] - 1 : diff[0]] == b"[", (old, now)
        assert chr(now[diff[0]]) in "xX " and chr(old[diff[0]]) in "xX "
