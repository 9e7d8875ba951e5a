"""core.links: a link resolved component by component through every link of the post-patch
tree, as the filesystem follows it (pure: strings in, outcomes out)."""

from __future__ import annotations

import time

from tools.codex.factory.core.links import BASE, MAX_HOPS, Link, LinkWorld, resolutions


def world(*links: tuple[str, str, str]) -> LinkWorld:
    return LinkWorld.of(Link(p, t, o) for p, t, o in links)


def ends(path: str, target: str, w: LinkWorld) -> list[tuple[str | None, str | None]]:
    return sorted(
        ((o.path, o.problem) for o in resolutions(path, target, w)),
        key=lambda x: (str(x[0]), str(x[1])),
    )


def test_plain_targets_resolve_like_paths() -> None:
    empty = world()
    assert ends("src/l", "../docs/a.md", empty) == [("docs/a.md", None)]
    assert ends("src/l", "..", empty) == [("", None)]
    assert ends("src/l", "../..", empty)[0][1] == "it leaves the repository"
    assert ends("src/l", "/etc/passwd", empty)[0][1] == "its target '/etc/passwd' is absolute"
    assert ends("src/l", "C:\\x", empty)[0][1] is not None


def test_links_on_the_way_are_followed_and_named() -> None:
    w = world(("src/up", "..", "A"))
    assert ends("src/esc", "up/..", w) == [(None, "it leaves the repository")]
    assert ends("src/h", "up/scenarios/x.md", w) == [("scenarios/x.md", None)]
    (way,) = resolutions("src/h", "up/scenarios", w)
    assert [x.path for x in way.through] == ["src/up"]


def test_the_link_s_own_folder_is_resolved_too() -> None:
    w = world(("deep", "a/b/c", BASE))
    assert ends("deep/l", "../../..", w) == [("", None)]  # deep is a/b/c: three levels up
    assert ends("deep/l", "../../../..", w)[0][1] == "it leaves the repository"


def test_a_case_insensitive_filesystem_follows_another_spelling() -> None:
    w = world(("src/up", "..", "A"))
    assert ends("src/esc", "UP/..", w) == [(None, "it leaves the repository")]


def test_a_path_that_may_be_either_link_follows_both() -> None:
    w = world(("x", "docs", BASE), ("x", "..", "B"))
    assert ends("l", "x/y", w) == [(None, "it leaves the repository"), ("docs/y", None)]


def test_an_absolute_link_on_the_way_is_a_problem() -> None:
    w = world(("docs/ext", "/usr/share", BASE))
    assert "absolute link" in str(ends("src/l", "../docs/ext/doc", w)[0][1])


def test_loops_stop_at_the_hop_limit() -> None:
    w = world(("a", "b", "A"), ("b", "a", "A"))
    assert ends("l", "a", w) == [(None, f"it cannot be resolved within {MAX_HOPS} links")]


def test_branching_at_every_step_is_bounded() -> None:
    """Two targets for each of 30 links: 2**30 ways; the step budget ends it fast."""
    links = []
    for i in range(30):
        links += [(f"l{i}", f"l{i + 1}", "A"), (f"l{i}", f"./l{i + 1}", "B")]
    start = time.monotonic()
    found = ends("x", "l0", world(*links))
    assert time.monotonic() - start < 5
    assert any(problem and "too many links" in problem for _, problem in found)
