"""The page renderer, pure: hostile text in every field stays text, the same data gives the
same bytes, and the page loads nothing."""

from __future__ import annotations

from html.parser import HTMLParser

from tools.codex.factory.core.htmlreport import Bar, Check, Note, Page, Scenario, Stage, render

H = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>&amp;"
ALLOWED = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "span", "table", "thead",
    "tbody", "tr", "th", "td", "code", "pre", "p", "br", "svg", "text", "rect", "line",
    "polyline", "circle",
}  # fmt: skip


class _Parse(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str | None]] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text += data


def hostile_page() -> Page:
    return Page(
        title=H,
        status=H,
        meta=[(H, H)],
        stages=[Stage(stage=H, status=H, reason=H)],
        timeline=[Bar(lane=H, label=H, start=0.0, end=1.5, status=H)],
        workers=["A", H],
        overlaps=[(H, ["A", H])],
        findings=[Note(rule=H, worker=H, path=H, message=H)],
        warnings=[Note(rule=H, worker=H, path=H, message=H)],
        checks=[Check(name=H, required=True, ok=False, result=H, tail=H)],
        scenarios=[Scenario(iteration=H, id=H, name=H, outcome=H, passes=H, symptom=H)],
        trajectory=[0.0, 0.5, 1.0],
        ledger_head=H,
        attestations=[(H, H)],
    )


def test_hostile_text_everywhere_stays_text() -> None:
    page = render(hostile_page())
    parsed = _Parse()
    parsed.feed(page)
    assert parsed.tags <= ALLOWED, parsed.tags - ALLOWED
    assert not [a for a, _ in parsed.attrs if a.startswith("on") or a in ("src", "href")]
    # Every field's text is on the page, as text: 25 places at least.
    assert parsed.text.count(H) >= 25
    assert "<script>" not in page and "<img" not in page


def test_same_data_same_bytes_and_nothing_fetched() -> None:
    assert render(hostile_page()) == render(hostile_page())
    page = render(hostile_page())
    assert "default-src 'none'" in page
    for fetch in ("http:", "https:", "url(", "@import", "<link", "<script"):
        assert fetch not in page.replace("http://www.w3.org/2000/svg", ""), fetch


def test_overlap_cells_are_bounded_whatever_the_workers_share() -> None:
    """25 workers sharing the same 2000 paths: every one of the 600 cells would list all 2000
    (the page growing with workers squared times paths); each cell shows a bounded few and
    how many more, so the page stays a small multiple of what validation recorded."""
    from tools.codex.factory.core.htmlreport import MAX_CELL_PATHS

    workers = [chr(ord("A") + i) for i in range(25)]
    paths = [f"src/module_{i:04d}.py" for i in range(2000)]
    page = render(Page(title="t", status="BLOCKED", workers=workers,
                       overlaps=[(p, workers) for p in paths]))  # fmt: skip
    assert len(page) < 1_000_000, len(page)
    assert page.count(f"and {2000 - MAX_CELL_PATHS} more") == 25 * 24
    assert "src/module_0000.py" in page and "src/module_1999.py" not in page
