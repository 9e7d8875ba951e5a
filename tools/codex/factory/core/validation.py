"""The bundle-validate judgement: every per-worker and cross-worker rule over recorded facts.

Pure: a function of the bundles' recorded facts and the recorded policy only, so
``ledger-replay`` recomputes the verdicts the live run gave. Policy version 1 is how earlier
releases judged (case collisions by ``str.lower``); version 2 adds one name equivalence
(:mod:`core.names`) for aliases, clashes and protected paths, name portability, special files
(symlinks, gitlinks, ``.gitattributes``, ``.gitmodules``), git's own reading of each patch and
the verification of binary postimages; version 4 resolves links through the merged tree and
measures git attributes; version 5 bounds a patch's lines and file sections; version 6 adds NTFS 8.3 short names (``name-short-alias``): a name
that may be another's short name is that name for collisions, overlaps and protected paths.
"""

from __future__ import annotations

import functools
import posixpath
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Literal

from tools.codex.factory.core import links, names, reviewagent
from tools.codex.factory.core.globs import match_any
from tools.codex.factory.core.paths import PathRuleError, normalise_repo_path
from tools.codex.factory.records.validation import (
    AgentAttempt,
    BundleFacts,
    Finding,
    Judgement,
    Overlap,
    PlannedScope,
    Policy,
    ReviewFinding,
    Severity,
    Verdict,
)

# Rules a run may downgrade to warnings (run.portable_names = warn): names that only some
# filesystem refuses or aliases. Anything that aliases .git or a special file always blocks.
PORTABLE_RULES = frozenset(
    {
        "name-windows-reserved",
        "name-windows-invalid",
        "name-trailing-dot-space",
        "name-hfs-ignorable",
    }
)
SPECIAL_FILES = {"gitattributes": ".gitattributes", "gitmodules": ".gitmodules"}
# Limit problems after which DIFF.patch or FILES_CHANGED.json was not read.
UNREAD_RULES = frozenset({"patch-too-many-lines", "patch-too-many-files"})


def _finding(
    worker: str, path: str, rule: str, message: str, severity: Severity = "block"
) -> Finding:
    return {"worker": worker, "path": path, "rule": rule, "message": message, "severity": severity}


def _sort(findings: list[Finding]) -> list[Finding]:
    unique = {(f["worker"], f["path"], f["rule"], f["message"]): f for f in findings}
    return [unique[k] for k in sorted(unique)]


@functools.lru_cache(maxsize=4096)
def _folded_pattern(pattern: str) -> str | None:
    try:
        return names.fold_pattern(pattern)
    except ValueError:
        return None


@functools.lru_cache(maxsize=256)
def _folded_patterns(patterns: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, str]]:
    """The patterns' folded forms (those that fold), each mapped to the first pattern it
    came from."""
    first: dict[str, str] = {}
    for pattern in patterns:
        folded = _folded_pattern(pattern)
        if folded is not None:
            first.setdefault(folded, pattern)
    return tuple(first), first


def protected_match(path: str, patterns: Sequence[str]) -> str | None:
    """The first pattern ``path`` matches on any filesystem: as spelled (ignoring case), or as
    one name-equivalence key (a trailing dot, an NFD spelling, an ignorable code point)."""
    hit = match_any(path, patterns, ignore_case=True)
    if hit is not None:
        return hit
    folded, first = _folded_patterns(tuple(patterns))
    hit = match_any(names.fold(path), folded) if folded else None
    return None if hit is None else first[hit]


def _segment_fits(part: str, segment: str) -> bool:
    """Whether one path component may name what one glob segment matches: as spelled (any
    case), as a name-equivalence key, or as an NTFS 8.3 short name of such a name."""
    if match_any(part, [segment], ignore_case=True) is not None:
        return True
    folded = _folded_pattern(segment)
    if folded is not None and match_any(names.fold_name(part), [folded]) is not None:
        return True
    return names.short_alias_glob(part, segment)


def _closure(states: set[int], segments: Sequence[str]) -> set[int]:
    """``states`` plus those reached by letting a ``**`` match no segment (also a trailing
    one: a short name of the protected folder itself counts)."""
    todo = list(states)
    while todo:
        j = todo.pop()
        if j < len(segments) and segments[j] == "**" and j + 1 not in states:
            states.add(j + 1)
            todo.append(j + 1)
    return states


def _segments_fit(parts: Sequence[str], segments: Sequence[str]) -> bool:
    """A dynamic program over (component, segment): linear in both, no backtracking."""
    states = _closure({0}, segments)
    for part in parts:
        nxt: set[int] = set()
        for j in states:
            if j == len(segments):
                continue
            if segments[j] == "**":
                nxt.add(j)
            elif _segment_fits(part, segments[j]):
                nxt.add(j + 1)
        states = _closure(nxt, segments)
        if not states:
            return False
    return len(segments) in states


def short_name_match(path: str, patterns: Sequence[str]) -> tuple[str, str, str] | None:
    """(pattern, component, segment) when a component of ``path`` of 8.3 short-name shape
    ('SCENAR~1') may be the NTFS short name of a name ``pattern`` covers, so that on a volume
    with short names ``path`` is a path the pattern covers; None otherwise. Callers ask
    :func:`protected_match` first: this adds only what short names add."""
    parts = path.split("/")
    shorts = [x for x in parts if names.short_form(x) is not None]
    if not shorts:
        return None
    for pattern in patterns:
        segments = (pattern + "**" if pattern.endswith("/") else pattern).split("/")
        if _segments_fit(parts, segments):
            for part in shorts:
                for segment in segments:
                    if segment != "**" and names.short_alias_glob(part, segment):
                        return pattern, part, segment
    return None


def _short_why(path: str, hit: tuple[str, str, str]) -> str:
    pattern, part, segment = hit
    return (
        f"{part!r} may be the Windows (NTFS) 8.3 short name of a name matching {segment!r}, so "
        f"on a volume with short names {path!r} is a path {pattern!r} covers"
    )


def git_short_aliases(path: str) -> list[tuple[str, str]]:
    """(component, git name) for each component of ``path`` that may be the NTFS 8.3 short
    name of '.git' or a git special file in its folder ('GIT~2', 'GITMOD~5') beyond the
    forms git itself refuses."""
    found = ((part, names.git_short_alias(part)) for part in path.split("/"))
    return [(part, name) for part, name in found if name is not None]


def _present_after(facts: BundleFacts) -> list[str]:
    """Paths that exist once the patch is applied (deleted ones do not count for clashes)."""
    deleted = set(facts.get("deleted", []))
    return sorted(set(facts["touched"]) - deleted)


def link_problem(path: str, target: str, protected: Sequence[str]) -> tuple[str, str] | None:
    """(rule, why) when a symlink at ``path`` with ``target`` leaves the repository, enters
    ``.git`` or a protected (holdout) path; None when it stays inside."""
    raw = target.replace("\\", "/")
    if not raw or raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        return "symlink-escape", f"its target {target!r} is absolute"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), raw))
    if resolved == ".." or resolved.startswith("../"):
        return "symlink-escape", f"its target {target!r} leaves the repository"
    parts = [] if resolved == "." else resolved.split("/")
    for part in parts:
        if names.fold_name(part) == ".git" or any(
            p.rule == "name-git-alias" for p in names.name_problems(part)
        ):
            return "symlink-escape", f"its target {target!r} enters .git"
    if parts:
        hit = protected_match(resolved, protected) or protected_match(resolved + "/x", protected)
        if hit is not None:
            return "symlink-into-protected", f"its target {target!r} is protected (matches {hit!r})"
    return None


def _landing_problem(
    resolved: str, protected: Sequence[str], short: bool
) -> tuple[str, str] | None:
    """(rule, why) when a link that resolves to the repository path ``resolved`` ('' is the
    root) lands in ``.git`` or a protected (holdout) path; with ``short`` (policy version 6),
    also through a name that may be an NTFS 8.3 short name of one."""
    parts = resolved.split("/") if resolved else []
    if any(names.is_git_dir_name(part) for part in parts):
        return "symlink-escape", f"it lands in .git ({resolved!r})"
    if short and any(git == ".git" for _, git in git_short_aliases(resolved)):
        return "symlink-escape", f"it lands in {resolved!r}, whose 8.3 short name may be .git"
    if parts:
        hit = protected_match(resolved, protected) or protected_match(resolved + "/x", protected)
        if hit is not None:
            return (
                "symlink-into-protected",
                f"it lands in {resolved!r}, protected (matches {hit!r})",
            )
        alias = (
            short_name_match(resolved, protected) or short_name_match(resolved + "/x", protected)
            if short
            else None
        )
        if alias is not None:
            return (
                "symlink-into-protected",
                f"it lands in {resolved!r}: {_short_why(resolved, alias)}",
            )
    return None


def resolved_link_problems(
    path: str,
    target: str,
    protected: Sequence[str],
    world: links.LinkWorld,
    short: bool = False,
) -> list[tuple[str, str, tuple[links.Link, ...]]]:
    """(rule, why, links followed) for each way the link at ``path`` resolves, component by
    component through every link of the post-patch tree, that leaves the repository, enters
    ``.git`` or lands in a protected (holdout) path (``short``: or an 8.3 short name of one)."""
    out: list[tuple[str, str, tuple[links.Link, ...]]] = []
    for way in links.follow(path, target, world):
        found = (
            ("symlink-escape", way.problem)
            if way.problem is not None
            else _landing_problem(way.path or "", protected, short)
        )
        if found is not None:
            out.append((found[0], found[1] + links.chain(way.through), way.through))
    return out


def link_world(facts_by_worker: Mapping[str, BundleFacts]) -> links.LinkWorld:
    """The links of the post-patch tree: the base commit's (recorded with the facts of every
    bundle that adds a link) and every worker's."""
    found: list[links.Link] = []
    for w in sorted(facts_by_worker):
        facts = facts_by_worker[w]
        found += [links.Link(p, t, links.BASE) for p, t in facts.get("base_links", [])]
        found += [links.Link(p, t, w) for p, t in facts.get("links", [])]
    return links.LinkWorld.of(found)


def base_link_findings(
    world: links.LinkWorld, protected: Sequence[str], short: bool = False
) -> list[Finding]:
    """A base link that resolves out of the repository, into .git or the holdout only through
    a link some worker adds (``a/b/cur -> s/../../..`` once ``a/b/s -> .`` exists): each worker
    whose link it follows is blocked, on that link's path."""
    out: list[Finding] = []
    for base in world.links():
        if base.owner != links.BASE:
            continue
        ways = resolved_link_problems(base.path, base.target, protected, world, short)
        for rule, why, through in ways:
            for link in through:
                if link.owner != links.BASE:
                    out.append(
                        _finding(
                            link.owner,
                            link.path,
                            rule,
                            f"worker {link.owner}: symlink {link.path!r} changes where the base's "
                            f"symlink {base.path!r} (-> {base.target!r}) points: {why}",
                        )
                    )
    return out


def worker_findings(
    facts: BundleFacts,
    protected: Sequence[str],
    expected_scope: PlannedScope | None = None,
    run_id: str | None = None,
    version: int = 1,
    portable: str = "block",
    world: links.LinkWorld | None = None,
) -> list[Finding]:
    """Every per-worker rule applied to one bundle's recorded facts.

    ``expected_scope`` is the scope lock recorded at launch; a SCOPE_LOCK.json that differs
    from it is refused, so a bundle cannot widen its own scope. ``world``: the links of the
    post-patch tree (policy version 4), through which each new link is resolved; without it a
    link's target is judged as text.
    """
    w = facts["worker"]
    out: list[Finding] = []
    scope_now = facts["scope"]
    if expected_scope is not None and scope_now is not None:
        for key in ("allow", "deny", "shared"):
            if sorted(scope_now[key]) != sorted(expected_scope[key]):
                out.append(
                    _finding(
                        w,
                        "SCOPE_LOCK.json",
                        "scope-lock-changed",
                        f"{w}_worker/SCOPE_LOCK.json {key} is {sorted(scope_now[key])}, but the "
                        f"run was launched with {sorted(expected_scope[key])}: restore it, or "
                        "change the plan and launch a new run",
                    )
                )
    for name in facts["missing"]:
        out.append(_finding(w, name, "bundle-file-missing", f"{w}_worker/{name} is missing"))
    for name in facts["symlinks"]:
        out.append(
            _finding(
                w,
                name,
                "bundle-file-symlink",
                f"{w}_worker/{name} is a symlink; bundle files must be regular files",
            )
        )
    for name, msg in facts["json_errors"]:
        out.append(_finding(w, name, "json-invalid", f"{w}_worker/{name} is not valid JSON: {msg}"))
    for name, where, msg in facts["schema_errors"]:
        out.append(_finding(w, name, "schema-violation", f"{w}_worker/{name} at {where}: {msg}"))
    for name, found in sorted(facts["ids"].items()):
        if found != w:
            out.append(
                _finding(w, name, "worker-id-mismatch", f"{w}_worker/{name} names worker {found!r}")
            )
    if run_id is not None and facts.get("run_id") not in (None, run_id):
        out.append(
            _finding(
                w,
                "STATUS.json",
                "run-id-mismatch",
                f"{w}_worker/STATUS.json belongs to run {facts['run_id']!r}, not {run_id!r}",
            )
        )
    status = facts["status"]
    if status is not None and status != "DONE":
        reason = facts.get("status_reason") or "no reason given"
        out.append(
            _finding(
                w, "STATUS.json", "worker-not-done", f"worker {w} status is {status}: {reason}"
            )
        )
    if facts["patch_error"]:
        out.append(
            _finding(
                w,
                "DIFF.patch",
                "patch-unparseable",
                f"{w}_worker/DIFF.patch: {facts['patch_error']}",
            )
        )

    touched = list(facts["touched"])
    listed = list(facts["files_changed"])
    safe: list[str] = []
    for path in sorted(set(touched) | set(listed)):
        try:
            normalise_repo_path(path)
        except PathRuleError as exc:
            out.append(_finding(w, path, exc.rule, f"worker {w}: {exc}"))
        else:
            safe.append(path)
    if len(listed) != len(set(listed)):
        dupes = sorted(p for p, n in Counter(listed).items() if n > 1)
        for p in dupes:
            out.append(
                _finding(
                    w, p, "files-changed-duplicate", f"worker {w}: FILES_CHANGED lists {p!r} twice"
                )
            )
    if (
        facts["patch_error"] is None
        and "DIFF.patch" not in facts["missing"]
        and "FILES_CHANGED.json" not in _broken(facts)
        and not unread(facts)
    ):
        for p in sorted(set(touched) - set(listed)):
            out.append(
                _finding(
                    w,
                    p,
                    "files-changed-incomplete",
                    f"worker {w}: DIFF.patch touches {p!r} but FILES_CHANGED does not list it",
                )
            )
        for p in sorted(set(listed) - set(touched)):
            out.append(
                _finding(
                    w,
                    p,
                    "files-changed-not-in-patch",
                    f"worker {w}: FILES_CHANGED lists {p!r} but DIFF.patch does not touch it",
                )
            )
    scope = facts["scope"]
    v2 = version >= 2
    for p in safe:
        hit = protected_match(p, protected) if v2 else match_any(p, protected, ignore_case=True)
        if hit is not None:
            out.append(
                _finding(
                    w, p, "protected-path", f"worker {w}: {p!r} is protected (matches {hit!r})"
                )
            )
        elif version >= 6 and (short := short_name_match(p, protected)) is not None:
            out.append(_finding(w, p, "name-short-alias", f"worker {w}: {_short_why(p, short)}"))
        if version >= 6:
            for part, git in git_short_aliases(p):
                out.append(
                    _finding(
                        w,
                        p,
                        "name-short-alias",
                        f"worker {w}: {part!r} in {p!r} may be the Windows (NTFS) 8.3 short "
                        f"name of {git!r}, which git keeps for itself",
                    )
                )
        if scope is None:
            continue
        deny = scope["deny"]
        denied = protected_match(p, deny) if v2 else match_any(p, deny, ignore_case=True)
        short_deny = short_name_match(p, deny) if version >= 6 and denied is None else None
        if denied is not None:
            out.append(
                _finding(w, p, "scope-denied", f"worker {w}: {p!r} matches deny glob {denied!r}")
            )
        elif short_deny is not None:
            out.append(
                _finding(w, p, "scope-denied", f"worker {w}: {_short_why(p, short_deny)} (deny)")
            )
        elif match_any(p, scope["allow"]) is None:
            out.append(
                _finding(
                    w,
                    p,
                    "scope-not-allowed",
                    f"worker {w}: {p!r} is outside its allow globs {scope['allow']}",
                )
            )
    if v2:
        out.extend(
            _v2_findings(facts, safe, protected, expected_scope, portable, world, version >= 6)
        )
    else:
        out.extend(_v1_case_findings(facts, safe))
    for where, rule, msg in facts.get("limit_problems", []):
        out.append(_finding(w, where, rule, f"worker {w}: {where}: {msg}"))
    for rel, rule, msg in facts["log_problems"]:
        out.append(_finding(w, f"LOGS/{rel}", rule, f"worker {w}: LOGS/{rel}: {msg}"))
    return _sort(out)


def _v1_case_findings(facts: BundleFacts, safe: list[str]) -> list[Finding]:
    """Case collisions as earlier releases judged them (``str.lower``), for their runs' replay."""
    w = facts["worker"]
    out: list[Finding] = []
    for p, existing in sorted(facts["base_case_variants"].items()):
        out.append(
            _finding(
                w,
                p,
                "case-collision",
                f"worker {w}: {p!r} differs only by case from {existing!r} in the base",
            )
        )
    by_lower: dict[str, list[str]] = {}
    for p in safe:
        by_lower.setdefault(p.lower(), []).append(p)
    for group in sorted(by_lower.values()):
        if len(group) > 1:
            for p in group:
                others = [o for o in group if o != p]
                out.append(
                    _finding(
                        w,
                        p,
                        "case-collision",
                        f"worker {w}: {p!r} differs only by case from {others}",
                    )
                )
    return out


def _alias_rule(spellings: Sequence[str]) -> str:
    """``case-collision`` when the spellings differ only by case, else ``name-alias``."""
    return "case-collision" if len({s.lower() for s in spellings}) == 1 else "name-alias"


def _v2_findings(
    facts: BundleFacts,
    safe: list[str],
    protected: Sequence[str],
    scope: PlannedScope | None,
    portable: str,
    world: links.LinkWorld | None = None,
    short: bool = False,
) -> list[Finding]:
    """Findings of policy version 2 and later; ``short``: NTFS 8.3 short names (version 6)."""
    w = facts["worker"]
    out: list[Finding] = []
    special = list(scope.get("special", [])) if scope is not None else []
    present = set(_present_after(facts))
    for p in safe:
        for problem in names.name_problems(p):
            severity: Severity = (
                "warn" if portable == "warn" and problem.rule in PORTABLE_RULES else "block"
            )
            out.append(_finding(w, p, problem.rule, f"worker {w}: {problem.message}", severity))
        kind = names.special_kind(p)
        if kind in SPECIAL_FILES and match_any(p, special) is None:
            out.append(
                _finding(
                    w,
                    p,
                    f"special-{kind}",
                    f"worker {w}: {p!r} is a {SPECIAL_FILES[kind]} file: it changes how git "
                    "reads the repository for every worker; allowed only where the plan's "
                    "`special` globs say so",
                )
            )
    for p, existing in sorted(facts["base_case_variants"].items()):
        rule = _alias_rule([p, existing])
        out.append(
            _finding(
                w,
                p,
                rule,
                f"worker {w}: {p!r} and {existing!r} in the base are one file on some filesystem",
            )
        )
    for p, existing in sorted(facts.get("base_dir_clashes", {}).items()):
        out.append(
            _finding(
                w,
                p,
                "file-directory-clash",
                f"worker {w}: {p!r} and {existing!r} in the base need one name to be a file "
                "and a folder at once",
            )
        )
    for clash in names.clashes({w: sorted(present)}):
        spellings = [e.path for e in clash.paths + clash.nested]
        rule = clash.rule if clash.rule != "name-alias" else _alias_rule(spellings)
        for e in clash.paths + clash.nested:
            out.append(_finding(w, e.path, rule, f"worker {w}: {clash.message}"))
    for path, target in facts.get("links", []):
        escape = link_problem(path, target, protected)
        if escape is None and world is not None:
            resolved = resolved_link_problems(path, target, protected, world, short)
            if resolved:
                escape = (resolved[0][0], f"its target {target!r}: {resolved[0][1]}")
        if escape is not None:
            out.append(_finding(w, path, escape[0], f"worker {w}: symlink {path!r}: {escape[1]}"))
        elif match_any(path, special) is None:
            out.append(
                _finding(
                    w,
                    path,
                    "special-symlink",
                    f"worker {w}: {path!r} becomes a symlink (to {target!r}); allowed only where "
                    "the plan's `special` globs say so",
                )
            )
    for path in facts.get("gitlinks", []):
        if match_any(path, special) is None:
            out.append(
                _finding(
                    w,
                    path,
                    "special-gitlink",
                    f"worker {w}: {path!r} becomes a submodule (gitlink); allowed only where the "
                    "plan's `special` globs say so",
                )
            )
    for path, verdict, why in facts.get("binary_checks", []):
        if verdict != "ok":
            out.append(
                _finding(
                    w,
                    path,
                    "binary-postimage-mismatch" if verdict == "mismatch" else "binary-unverifiable",
                    f"worker {w}: binary patch of {path!r}: {why}",
                )
            )
    stray = facts.get("stray_text")
    if stray:
        out.append(
            _finding(
                w,
                "DIFF.patch",
                "patch-stray-text",
                f"worker {w}: DIFF.patch holds text outside its 'diff --git' file sections "
                f"({stray}): after another patch git could read it as part of that patch; a "
                "bundle's DIFF.patch is `git diff` output and nothing else",
            )
        )
    for difference in facts.get("patch_disagreements", []):
        out.append(
            _finding(
                w,
                "DIFF.patch",
                "patch-ambiguous",
                f"worker {w}: git reads DIFF.patch differently from the validator: {difference}",
            )
        )
    return out


def unread(facts: BundleFacts) -> bool:
    """DIFF.patch or FILES_CHANGED.json was over a line or file limit and not read: comparing
    the two would only repeat that finding path by path."""
    return any(rule in UNREAD_RULES for _, rule, _ in facts.get("limit_problems", []))


def reviewable(facts: BundleFacts) -> bool:
    """Gate 0 reads a patch validation could read whole: judged bytes, parsed, within limits."""
    return (
        facts.get("apply_sha256") is not None and facts["patch_error"] is None and not unread(facts)
    )


def _broken(facts: BundleFacts) -> set[str]:
    found = set(facts["missing"]) | set(facts["symlinks"])
    found |= {n for n, _ in facts["json_errors"]}
    found |= {n for n, _, _ in facts["schema_errors"]}
    return found


def overlaps(facts_by_worker: Mapping[str, BundleFacts], allow_identical: bool) -> list[Overlap]:
    """Paths touched by two or more workers, each with its resolution; symmetric in workers."""
    owners: dict[str, list[str]] = {}
    for w in sorted(facts_by_worker):
        for p in set(facts_by_worker[w]["touched"]):
            owners.setdefault(p, []).append(w)
    out: list[Overlap] = []
    for path in sorted(owners):
        ws = sorted(owners[path])
        if len(ws) < 2:
            continue
        scopes = [facts_by_worker[w]["scope"] for w in ws]
        resolution: Literal["shared", "identical", "blocked"]
        if all(s is not None and match_any(path, s["shared"]) is not None for s in scopes):
            resolution = "shared"
        elif (
            allow_identical
            and len({facts_by_worker[w]["section_hashes"].get(path) for w in ws}) == 1
        ):
            resolution = "identical"
        else:
            resolution = "blocked"
        out.append({"path": path, "workers": ws, "resolution": resolution})
    return out


def cross_case_collisions(facts_by_worker: Mapping[str, BundleFacts]) -> list[Finding]:
    """Version 1: paths of different workers that differ only by case."""
    by_lower: dict[str, set[tuple[str, str]]] = {}
    for w in sorted(facts_by_worker):
        for p in facts_by_worker[w]["touched"]:
            by_lower.setdefault(p.lower(), set()).add((p, w))
    out: list[Finding] = []
    for group in by_lower.values():
        spellings = {p for p, _ in group}
        if len(spellings) < 2:
            continue
        for p, w in sorted(group):
            others = sorted(f"{o} ({ow})" for o, ow in group if o != p)
            out.append(
                _finding(
                    w,
                    p,
                    "case-collision",
                    f"worker {w}: {p!r} differs only by case from {', '.join(others)}",
                )
            )
    return out


def cross_name_clashes(facts_by_worker: Mapping[str, BundleFacts]) -> list[Finding]:
    """Version 2: names of different workers that are one file, or a file and a folder at
    once, on some filesystem (:func:`names.clashes`); within one worker they are judged there."""
    present = {w: _present_after(f) for w, f in sorted(facts_by_worker.items())}
    out: list[Finding] = []
    for clash in names.clashes(present):
        members = clash.paths + clash.nested
        if len({e.owner for e in members}) < 2:
            continue
        rule = clash.rule if clash.rule != "name-alias" else _alias_rule([e.path for e in members])
        for e in members:
            out.append(_finding(e.owner, e.path, rule, f"worker {e.owner}: {clash.message}"))
    return out


def attributes_unchecked(facts: BundleFacts) -> list[str]:
    """The paths of ``facts`` that add, change or remove a .gitattributes (any spelling)."""
    return sorted({p for p in facts["touched"] if names.special_kind(p) == "gitattributes"})


def _attribute_findings(facts_by_worker: Mapping[str, BundleFacts]) -> list[Finding]:
    """Checks read git attributes from the base commit through ``GIT_ATTR_SOURCE``; a git that
    ignores it (older than 2.42) would let a patch's own .gitattributes switch a check off
    (``* -whitespace``), so such a patch cannot be checked as configured."""
    out: list[Finding] = []
    for w in sorted(facts_by_worker):
        for p in attributes_unchecked(facts_by_worker[w]):
            out.append(
                _finding(
                    w,
                    p,
                    "gitattributes-unchecked",
                    f"worker {w}: {p!r} changes git attributes, and this machine's git ignores "
                    "GIT_ATTR_SOURCE (it needs git 2.42 or newer), so the checks would read the "
                    "attributes the patch brings instead of the base commit's "
                    "(checks.attributes = base): upgrade git to 2.42 or newer and validate "
                    "again, or launch a run with checks.attributes = candidate",
                )
            )
    return out


def short_name_clashes(
    facts_by_worker: Mapping[str, BundleFacts], severity: Severity = "block"
) -> list[Finding]:
    """``name-short-alias`` for each path of the run with a component of 8.3 short-name shape
    that may be the NTFS short name of another name in its folder: of the base
    (``base_short_aliases`` of the facts) or of any worker's paths, deleted ones aside
    ('docs/LONG-F~1.MD' and 'docs/long-file-name.md'). Every owner of either is blocked, each
    on its own path: on such a volume both write one file. ``severity``: 'warn' when the run
    reports names that are one file somewhere without blocking (``run.case_collisions``)."""
    out: list[Finding] = []
    for w in sorted(facts_by_worker):
        for p, existing in sorted(facts_by_worker[w].get("base_short_aliases", {}).items()):
            why = f"{p!r} may be the Windows (NTFS) 8.3 short name of {existing!r} of the base"
            out.append(_finding(w, p, "name-short-alias", f"worker {w}: {why}", severity))
    folders: dict[str, dict[str, set[tuple[str, str]]]] = {}  # parent key -> name -> owners
    for w, f in sorted(facts_by_worker.items()):
        for p in _present_after(f):
            parts = p.split("/")
            for i, part in enumerate(parts):
                parent = names.fold("/".join(parts[:i])) if i else ""
                owned = folders.setdefault(parent, {}).setdefault(part, set())
                owned.add((w, "/".join(parts[: i + 1])))
    for entries in folders.values():
        shorts = sorted(n for n in entries if names.short_form(n) is not None)
        index = names.ShortNames(entries) if shorts else None
        for short in shorts:
            long = index.find(short) if index is not None else None
            if long is None:
                continue
            (sw, sp), (lw, lp) = min(entries[short]), min(entries[long])
            why = f"{sp!r} ({sw}) may be the Windows (NTFS) 8.3 short name of {lp!r} ({lw})"
            for owner, path in sorted(entries[short] | entries[long]):
                out.append(
                    _finding(owner, path, "name-short-alias", f"worker {owner}: {why}", severity)
                )
    return out


def review_findings(
    reviews: Mapping[str, Sequence[ReviewFinding]],
    workers: Sequence[str],
    severity: Mapping[str, str],
) -> list[Finding]:
    """Gate 0's findings as validation findings: a rule the run's settings make critical
    blocks its worker, a warning is reported, an 'off' one is dropped; each names worker,
    path and line, its rule the finding's code."""
    out: list[Finding] = []
    for w in sorted(workers):
        for f in reviews.get(w, ()):
            level = severity.get(f["rule"], f["severity"])
            if level == "off":
                continue
            where = f"{f['path']}:{f['line']}" if f["line"] else f["path"]
            out.append(
                _finding(
                    w,
                    f["path"],
                    f["rule"],
                    f"{w}_worker {where}: {f['message']}",
                    "block" if level == "critical" else "warn",
                )
            )
    return out


def agent_findings(
    facts_by_worker: Mapping[str, BundleFacts],
    answers: Mapping[str, Sequence[AgentAttempt]],
) -> list[Finding]:
    """The reviewer agent's verdicts as validation findings, for every worker Gate 0 reads: a
    critical finding blocks (``review-agent``), a warning is reported, and a worker without a
    valid answer is blocked (``review-agent-failed``)."""
    out: list[Finding] = []
    for w in sorted(facts_by_worker):
        if not reviewable(facts_by_worker[w]):
            continue
        for path, rule, message, level in reviewagent.findings_of(w, answers.get(w, ())):
            out.append(_finding(w, path, rule, message, "block" if level == "block" else "warn"))
    return out


def evaluate(
    facts_by_worker: Mapping[str, BundleFacts],
    policy: Policy,
    gitdir_changed: Sequence[str] = (),
    attr_source: bool = True,
    reviews: Mapping[str, Sequence[ReviewFinding]] | None = None,
    agent_answers: Mapping[str, Sequence[AgentAttempt]] | None = None,
) -> Judgement:
    """The whole bundle-validate judgement: findings, warnings, overlaps, verdicts, status.

    ``gitdir_changed``: paths of the repository's shared git folder (hooks, config) that changed
    while the run's agents worked; the factory restored them, and every worker is blocked, since
    any of them could have done it. ``attr_source``: whether the validating machine's git honours
    ``GIT_ATTR_SOURCE`` (recorded in ``validation.decided`` when it was asked). ``reviews``:
    Gate 0's recorded findings per worker, judged when the policy (version 7) enables it.
    ``agent_answers``: the reviewer agent's recorded attempts per worker (``review.agent``
    payloads, in order), judged when the policy (version 8) names an agent.
    """
    version = int(policy.get("version", 1))
    portable = str(policy.get("portable_names", "block"))
    findings: list[Finding] = []
    if version >= 4 and policy.get("attributes", "base") == "base" and not attr_source:
        findings.extend(_attribute_findings(facts_by_worker))
    for w in sorted(facts_by_worker):
        for rel in gitdir_changed:
            findings.append(
                _finding(
                    w,
                    f".git/{rel}",
                    "git-dir-changed",
                    f"the repository's .git/{rel} changed while the run's agents worked (restored "
                    "by the factory): a hook or config there would run in the operator's git",
                )
            )
    scopes = policy.get("scopes", {})
    world = link_world(facts_by_worker) if version >= 4 else None
    for w in sorted(facts_by_worker):
        findings.extend(
            worker_findings(
                facts_by_worker[w],
                policy["protected_paths"],
                scopes.get(w),
                policy.get("run_id"),
                version,
                portable,
                world,
            )
        )
    if world is not None and any(f.get("links") for f in facts_by_worker.values()):
        findings.extend(base_link_findings(world, policy["protected_paths"], version >= 6))
    if version >= 2:
        findings.extend(cross_name_clashes(facts_by_worker))
    else:
        findings.extend(cross_case_collisions(facts_by_worker))
    if version >= 6:
        warn = policy["case_collisions"] == "warn"
        findings.extend(short_name_clashes(facts_by_worker, "warn" if warn else "block"))
    settings = policy.get("review")
    if version >= 7 and settings is not None and settings["enabled"]:
        findings.extend(review_findings(reviews or {}, list(facts_by_worker), settings["severity"]))
        if version >= 8 and policy.get("review_agent") is not None:
            findings.extend(agent_findings(facts_by_worker, agent_answers or {}))
    ovl = overlaps(facts_by_worker, bool(policy["allow_identical_patch_overlap"]))
    for o in ovl:
        if o["resolution"] == "blocked":
            for w in o["workers"]:
                others = [x for x in o["workers"] if x != w]
                findings.append(
                    _finding(
                        w,
                        o["path"],
                        "overlap",
                        f"{o['path']!r} is touched by {', '.join(o['workers'])}: worker {w} "
                        f"overlaps {', '.join(others)} without a shared scope lock entry on "
                        "every side",
                    )
                )
    warnings: list[Finding] = [f for f in findings if f["severity"] == "warn"]
    findings = [f for f in findings if f["severity"] != "warn"]
    if policy["case_collisions"] == "warn":
        for f in findings:
            if f["rule"] in ("case-collision", "name-alias"):
                warnings.append({**f, "severity": "warn"})
        findings = [f for f in findings if f["rule"] not in ("case-collision", "name-alias")]
    findings = _sort(findings)
    verdicts: dict[str, Verdict] = {
        w: ("BLOCKED" if any(f["worker"] == w for f in findings) else "PASS")
        for w in sorted(facts_by_worker)
    }
    status: Verdict = "BLOCKED" if findings or not facts_by_worker else "PASS"
    return {
        "status": status,
        "verdicts": verdicts,
        "findings": findings,
        "warnings": _sort(warnings),
        "overlaps": ovl,
        "touched": {w: sorted(facts_by_worker[w]["touched"]) for w in sorted(facts_by_worker)},
    }
