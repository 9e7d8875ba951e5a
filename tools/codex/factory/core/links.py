"""Where a symlink really points once every patch is applied: resolved component by component.

A link's target is text, but the filesystem reads it one component at a time, and any
component may itself be a link: ``src/up -> ..`` is harmless alone, yet ``src/esc -> up/..``
then leaves the repository and ``src/holdout -> up/scenarios`` lands in the holdout, which a
lexical reading (``normpath('src/up/..')`` is ``src``) never sees. So the links of the
post-patch tree (the base commit's and every worker's, as recorded in ``bundle.facts``) form a
:class:`LinkWorld`, and :func:`follow` follows them as the kernel would, up to
:data:`MAX_HOPS` links.

Conservative where the tree is uncertain: a path that is a link in the base and in a patch (or
in two patches) may be either, so both targets are followed; a base link a patch deletes is
still followed; names are matched by their :func:`names.fold` key, since a case-insensitive
filesystem follows ``SRC/UP`` through ``src/up``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tools.codex.factory.core import names

# Links followed in one resolution before it is refused (Linux's MAXSYMLINKS: ELOOP beyond).
MAX_HOPS = 40
# Components processed for one link across every alternative, so hostile link sets that branch
# at every step cannot make the search exponential.
MAX_STEPS = 20_000

BASE = "base"


@dataclass(frozen=True)
class Link:
    """One symlink of the post-patch tree: where it is, its target, who made it."""

    path: str
    target: str
    owner: str  # a worker id, or BASE


@dataclass(frozen=True)
class LinkWorld:
    """Every link of the post-patch tree, by the fold key of its path."""

    by_key: Mapping[str, tuple[Link, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, links: Iterable[Link]) -> LinkWorld:
        by_key: dict[str, list[Link]] = {}
        for link in sorted(set(links), key=lambda x: (x.path, x.target, x.owner)):
            by_key.setdefault(names.fold(link.path), []).append(link)
        return cls({k: tuple(v) for k, v in by_key.items()})

    def links(self) -> list[Link]:
        return [link for group in self.by_key.values() for link in group]


@dataclass(frozen=True)
class Outcome:
    """One way the link can resolve: a repository path ('' for the root), or why not
    (``problem``); ``through`` lists the links followed on the way, in order."""

    path: str | None
    problem: str | None
    through: tuple[Link, ...]


def _absolute(target: str) -> bool:
    return target.startswith("/") or (len(target) > 1 and target[1] == ":")


def _components(text: str) -> list[str]:
    return [c for c in text.replace("\\", "/").split("/") if c not in ("", ".")]


# A way being followed: resolved components, their fold keys, pending components, links followed.
_State = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[Link, ...]]


def follow(path: str, target: str, world: LinkWorld) -> list[Outcome]:
    """Every way the link at ``path`` with ``target`` may resolve in ``world``.

    The link's own folder is resolved too (it may sit below another link). A ``..`` above the
    root, an absolute or drive target, more than :data:`MAX_HOPS` links on one way or more than
    :data:`MAX_STEPS` components in all are outcomes with a ``problem``.
    """
    parent = _components(path)[:-1]
    if not target or _absolute(target.replace("\\", "/")):
        return [Outcome(None, f"its target {target!r} is absolute", ())]
    stack: list[_State] = [((), (), tuple(parent + _components(target)), ())]
    out: list[Outcome] = []
    steps = 0
    while stack:
        done, keys, pending, through = stack.pop()
        while pending:
            steps += 1
            if steps > MAX_STEPS:
                return [*out, Outcome(None, "it cannot be resolved: too many links", through)]
            comp, pending = pending[0], pending[1:]
            if comp == "..":
                if not done:
                    out.append(Outcome(None, "it leaves the repository", through))
                    break
                done, keys = done[:-1], keys[:-1]
                continue
            key = "/".join((*keys, names.fold_name(comp)))
            followed = world.by_key.get(key, ())
            if not followed:
                done, keys = (*done, comp), (*keys, names.fold_name(comp))
                continue
            if len(through) >= MAX_HOPS:
                out.append(Outcome(None, f"it cannot be resolved within {MAX_HOPS} links", through))
                break
            for link in followed:
                hop = (*through, link)
                if not link.target or _absolute(link.target.replace("\\", "/")):
                    out.append(Outcome(None, f"it leads to {link.path!r}, an absolute link", hop))
                    continue
                stack.append((done, keys, tuple(_components(link.target)) + pending, hop))
            break
        else:
            out.append(Outcome("/".join(done), None, through))
    return out


def chain(through: tuple[Link, ...]) -> str:
    """The links followed, for a message: "through 'src/up' (-> '..', by A)"."""
    if not through:
        return ""
    shown = ", ".join(
        f"{x.path!r} (-> {x.target!r}, {'in the base' if x.owner == BASE else 'by ' + x.owner})"
        for x in through[:6]
    )
    more = f" and {len(through) - 6} more" if len(through) > 6 else ""
    return f" through {shown}{more}"
