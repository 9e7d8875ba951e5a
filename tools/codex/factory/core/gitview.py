"""One shape for "what does this patch touch", read by git and by us, and their differences.

Our parser (``core.patchparse``) and ``git apply`` are two readers of the same hostile bytes;
where they disagree (a timestamp git strips from a name, a section one of them skips) the
validator's checks run on one reading while git applies the other. Rather than chase every
git quirk, both readings are rendered as ``git apply --numstat --summary`` would print them
and compared: any difference blocks the patch.

``GitSection.name`` is what ``--numstat`` prints (the new name; the old name of a deletion) and
``GitSection.old_name`` what ``--numstat -R`` prints (the old name; the new name of a
creation), so the two name every path a section touches, unambiguously (``-z``: NUL
separated, never quoted). ``summary`` holds the ``--summary`` lines (create/delete modes,
renames and copies with their similarity, mode changes, rewrites) exactly as git prints them.
Names are bytes decoded as UTF-8 with ``surrogateescape``: equal strings mean equal bytes.

The old names come from a reversed numstat rather than from the summary because git prints
summary names raw and newline-terminated: a name holding a newline or " => " would make the
summary alone ambiguous, the NUL-separated numstat never is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import zip_longest

_RECORD = re.compile(rb"(\d+|-)\t(\d+|-)\t([^\0]*)\0")


@dataclass(frozen=True)
class GitSection:
    """One file section: the names numstat prints forwards and reversed, and its line counts
    (None for a binary section, where numstat prints '-')."""

    name: str
    old_name: str
    added: int | None
    deleted: int | None


@dataclass(frozen=True)
class GitView:
    """A patch as ``git apply --numstat --summary`` sees it; ``error`` if git refuses it."""

    sections: tuple[GitSection, ...] = ()
    summary: tuple[str, ...] = ()
    error: str | None = None

    def paths(self) -> list[str]:
        """Every path the sections touch (both sides of a rename or copy), sorted."""
        return sorted({p for s in self.sections for p in (s.name, s.old_name)})


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _count(raw: bytes) -> int | None:
    return None if raw == b"-" else int(raw)


def _numstat(out: bytes) -> tuple[list[tuple[int | None, int | None, str]], bytes]:
    """Leading ``-z`` numstat records of ``out`` and whatever follows them."""
    records = []
    pos = 0
    while (m := _RECORD.match(out, pos)) is not None:
        records.append((_count(m[1]), _count(m[2]), _text(m[3])))
        pos = m.end()
    return records, out[pos:]


def read_apply_output(forward: bytes, reverse: bytes) -> GitView:
    """Build a view from ``apply --numstat --summary -z`` and ``apply -R --numstat -z`` output.

    Output of any other shape (which git does not print) is reported as the view's error.
    """
    fwd, rest = _numstat(forward)
    rev, rev_rest = _numstat(reverse)
    if rev_rest:
        return GitView(error="unexpected output from 'git apply -R --numstat'")
    if rest and not rest.endswith(b"\n"):
        return GitView(error="unexpected output from 'git apply --summary'")
    summary = split_summary(_text(rest))
    rev.reverse()  # -R lists the sections last first
    if len(rev) != len(fwd) or any(
        (a, d) != (rd, ra) for (a, d, _), (ra, rd, _) in zip(fwd, rev, strict=True)
    ):
        return GitView(error="'git apply' read the patch differently forwards and reversed")
    sections = tuple(
        GitSection(name=name, old_name=old, added=a, deleted=d)
        for (a, d, name), (_, _, old) in zip(fwd, rev, strict=True)
    )
    return GitView(sections=sections, summary=summary)


def split_summary(text: str) -> tuple[str, ...]:
    """Summary text as lines without their newline (a name may hold one: both readings are
    split the same way, so equal tuples still mean equal bytes)."""
    return tuple(text.split("\n")[:-1]) if text else ()


def _lines(s: GitSection) -> str:
    return "binary" if s.added is None else f"+{s.added} -{s.deleted}"


def compare_views(ours: GitView, gits: GitView) -> list[str]:
    """Each difference between our reading and git's, as one line: where, ours, git's."""
    out: list[str] = []
    if ours.error is not None:
        out.append(f"we cannot read the patch: {ours.error}")
    if gits.error is not None:
        out.append(f"git cannot read the patch: {gits.error}")
    if out:
        return out
    if len(ours.sections) != len(gits.sections):
        out.append(f"we read {len(ours.sections)} file sections, git read {len(gits.sections)}")
    for i, (a, b) in enumerate(zip_longest(ours.sections, gits.sections), start=1):
        where = f"file section {i}"
        if a is None or b is None:
            s = b if a is None else a
            assert s is not None
            reader = "git" if a is None else "we"
            out.append(f"{where}: only {reader} read one, naming {s.name!r}")
            continue
        if a.name != b.name:
            out.append(f"{where}: we read the name {a.name!r}, git read {b.name!r}")
        if a.old_name != b.old_name:
            out.append(f"{where}: we read the old name {a.old_name!r}, git read {b.old_name!r}")
        if (a.added, a.deleted) != (b.added, b.deleted):
            out.append(f"{where}: we read {_lines(a)} lines, git read {_lines(b)}")
    if ours.summary != gits.summary:
        for i, (x, y) in enumerate(zip_longest(ours.summary, gits.summary), start=1):
            if x != y:
                ours_text = "nothing" if x is None else repr(x.strip())
                gits_text = "nothing" if y is None else repr(y.strip())
                out.append(f"summary line {i}: we read {ours_text}, git read {gits_text}")
    return out
