"""Read a worker's bundle once, within limits, into recorded facts and a content-addressed snapshot.

Reading is split from judging: :func:`gather_facts` does all the I/O and returns plain JSON
(recorded in the ledger as ``bundle.facts``), and :mod:`core.decisions` judges those facts with
pure functions, so ``ledger-replay`` recomputes every verdict from the ledger alone.

What is validated is what is applied: each bundle file is read exactly once; the bytes judged
(DIFF.patch as it will be applied, the JSON documents) are hashed and, when a ``store`` is given,
kept in the run's snapshot store under their hash. Integration later applies those bytes,
verified against the hashes validation recorded, and never reads the bundle folder again.

Bounded: the walk is iterative and never follows a link; no file over ``max_file_bytes`` is read
(a sparse 1 TiB file is listed by its size, not hashed); the bundle as a whole is capped; every
string a worker supplies is clipped with its hash before it reaches a fact; DIFF.patch is read
only within its line and file-section limits.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tools.codex.factory.core import gitbinary, gitview, names, patchparse
from tools.codex.factory.core.paths import (
    WORKER_FILES,
    PathRuleError,
    normalise_repo_path,
    worker_dirname,
)
from tools.codex.factory.core.text import clip, escaped_name, is_utf8
from tools.codex.factory.infra import fsutil, gitops, jsonio, schemas
from tools.codex.factory.records.validation import BundleFacts

# Version of the facts format: 2 adds snapshot hashes and limit problems, 3 the base's
# symlinks (for a bundle that adds links), 4 the base names an added name of 8.3 short-name
# shape may be (when there are any). Replay compares a fact recorded by an earlier release on
# the keys its version had.
FACTS_VERSION = 4
V3_KEYS = ("base_links",)
V4_KEYS = ("base_short_aliases",)
V1_KEYS = (
    "worker", "missing", "symlinks", "json_errors", "schema_errors", "status", "status_reason",
    "ids", "files_changed", "touched", "added", "patch_error", "section_hashes", "scope",
    "depends_on", "log_problems", "base_case_variants", "bundle_hash", "run_id",
)  # fmt: skip
JSON_FILES = {
    "STATUS.json": "worker_status",
    "FILES_CHANGED.json": "files_changed",
    "SCOPE_LOCK.json": "scope_lock",
    "HANDOFF_NOTE.json": "handoff_note",
    "LOGS/INDEX.json": "logs_index",
}
_CHUNK = 1 << 20
Store = Callable[[bytes], str]


@dataclass(frozen=True)
class BaseTree:
    """The base commit's paths by name-equivalence key: files and leading folders."""

    files: Mapping[str, str]  # fold key -> path
    dirs: Mapping[str, str]  # fold key -> folder path
    links: tuple[tuple[str, str], ...] = ()  # (path, target) of the base's symlinks

    @classmethod
    def of(cls, paths: Iterable[str], links: Iterable[tuple[str, str]] = ()) -> BaseTree:
        files: dict[str, str] = {}
        dirs: dict[str, str] = {}
        for p in paths:
            parts = p.split("/")
            keys = [names.fold_name(x) for x in parts]
            files.setdefault("/".join(keys), p)
            for i in range(1, len(parts)):
                dirs.setdefault("/".join(keys[:i]), "/".join(parts[:i]))
        return cls(files, dirs, tuple(sorted(links)))

    @functools.cached_property
    def _children(self) -> dict[str, list[str]]:
        """Folder key ('' for the root) -> the names in it."""
        out: dict[str, list[str]] = {}
        for path in (*self.files.values(), *self.dirs.values()):
            parent, _, name = path.rpartition("/")
            out.setdefault(
                "/".join(names.fold_name(x) for x in parent.split("/")) if parent else "", []
            ).append(name)
        return out

    @functools.cached_property
    def _short_indexes(self) -> dict[str, names.ShortNames]:
        """Folder key -> its names indexed for short-name look-ups, filled as asked."""
        return {}

    def short_aliases(self, added: Iterable[str]) -> dict[str, str]:
        """Each ``added`` path with a component of 8.3 short-name shape that may be the NTFS
        short name of a base file or folder in the same folder -> that base path. Conservative:
        a base name the patch deletes still counts (a checkout may still hold it)."""
        out: dict[str, str] = {}
        for p in sorted(added):
            parts = p.split("/")
            for i, part in enumerate(parts):
                if names.short_form(part) is None:
                    continue
                key = "/".join(names.fold_name(x) for x in parts[:i])
                index = self._short_indexes.get(key)
                if index is None:
                    index = self._short_indexes[key] = names.ShortNames(self._children.get(key, ()))
                long = index.find(part)
                if long is not None:
                    folder = self.dirs.get(key, "/".join(parts[:i]))
                    out[p] = f"{folder}/{long}" if i else long
                    break
        return out

    def clashes(
        self, added: Iterable[str], deleted: set[str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """(aliases, file-folder clashes) of the ``added`` paths with the base, each
        path -> the base path it clashes with; base files the patch deletes do not count."""
        aliases: dict[str, str] = {}
        clashes: dict[str, str] = {}
        for p in sorted(added):
            parts = p.split("/")
            keys = [names.fold_name(x) for x in parts]
            key = "/".join(keys)
            existing = self.files.get(key)
            if existing is not None and existing != p and existing not in deleted:
                aliases[p] = existing
            folder = self.dirs.get(key)
            if folder is not None:
                clashes[p] = folder
            for i in range(1, len(parts)):
                above = self.files.get("/".join(keys[:i]))
                if above is not None and above not in deleted:
                    clashes[p] = above
                    break
        return aliases, clashes


@dataclass(frozen=True)
class Limits:
    """What a bundle may hold; from the run's recorded config."""

    max_file_bytes: int = 64 * 1024 * 1024
    max_bundle_bytes: int = 512 * 1024 * 1024
    max_bundle_files: int = 100_000
    max_path_chars: int = 4096
    max_text_chars: int = 2000
    max_list_items: int = 2000
    max_list_chars: int = 250_000
    max_patch_lines: int = 1_000_000
    max_patch_files: int = 10_000

    @classmethod
    def from_settings(cls, get: Callable[[str], Any]) -> Limits:
        return cls(**{name: int(get(f"limits.{name}")) for name in cls.__dataclass_fields__})

    def as_dict(self, policy_version: int = 5) -> dict[str, int]:
        """The limits as policy ``policy_version`` records them (2: without the list caps,
        before 5: without the patch limits), so earlier runs replay unchanged."""
        names = [
            n
            for n in self.__dataclass_fields__
            if (policy_version >= 3 or n not in LIST_CAPS)
            and (policy_version >= 5 or n not in PATCH_LIMITS)
        ]
        return {name: int(getattr(self, name)) for name in sorted(names)}


LIST_CAPS = ("max_list_items", "max_list_chars")
PATCH_LIMITS = ("max_patch_lines", "max_patch_files")
_T = TypeVar("_T")


@dataclass
class Caps:
    """Bounds every worker-supplied list on its way into the facts: at most ``max_list_items``
    items and ``max_list_chars`` characters (each item counted as clipped); what is cut is a
    ``list-too-long`` limit problem (it blocks), so judging the rest cannot pass a bundle."""

    limits: Limits
    problems: list[list[str]]

    def items(
        self, items: Sequence[_T], where: str, size: Callable[[_T], int], *, report: bool = True
    ) -> list[_T]:
        """The leading ``items`` within the caps (``report``: a cut is a problem; a list derived
        from one already bounded, a subset of it, says nothing again)."""
        lim = self.limits
        kept: list[_T] = []
        total = 0
        for item in items:
            n = size(item)
            if len(kept) >= lim.max_list_items or total + n > lim.max_list_chars:
                if not report:
                    return kept
                whole = sum(map(size, items))
                self.problems.append(
                    [
                        where,
                        "list-too-long",
                        f"{len(items)} items, {whole} characters: over the limit of "
                        f"{lim.max_list_items} items or {lim.max_list_chars} characters; only "
                        f"the first {len(kept)} were judged",
                    ]
                )
                return kept
            kept.append(item)
            total += n
        return kept

    def paths(self, paths: Iterable[str], where: str, *, report: bool = True) -> list[str]:
        """The leading paths within the caps, each clipped (``report``: a clipped one is a
        ``path-too-long`` problem)."""
        lim = self.limits
        kept = self.items(
            list(paths), where, lambda p: min(len(p), lim.max_path_chars), report=report
        )
        problems = self.problems if report else []
        return [_clip_path(p, lim, problems, where) for p in kept]

    def texts(self, texts: Sequence[str], where: str) -> list[str]:
        lim = self.limits
        kept = self.items(texts, where, lambda t: min(len(t), lim.max_text_chars))
        return [clip(t, lim.max_text_chars) for t in kept]

    def rows(self, rows: Sequence[Sequence[str]], where: str) -> list[list[str]]:
        """Rows of worker-derived strings ([path, verdict, why], ...), each string clipped."""
        lim = self.limits
        kept = self.items(rows, where, lambda r: sum(min(len(x), lim.max_text_chars) for x in r))
        return [[clip(x, lim.max_path_chars) for x in r] for r in kept]


def walk(folder: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below ``folder`` as ('/'-separated relative path, lstat), never through a
    link and at any depth (:func:`infra.fsutil.walk`)."""
    for entry in fsutil.walk(folder):
        yield entry.rel, entry.st


def _read_bounded(path: Path, size: int) -> bytes | None:
    """Read a regular file of (at most) ``size`` bytes without following a link."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        parts: list[bytes] = []
        left = size + 1
        while left > 0:
            chunk = os.read(fd, min(_CHUNK, left))
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        data = b"".join(parts)
        return data if len(data) <= size else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _hash_bounded(path: Path, limit: int) -> str | None:
    data = _read_bounded(path, limit)
    return None if data is None else hashlib.sha256(data).hexdigest()


def scan(folder: Path, limits: Limits, keep: frozenset[str]) -> tuple[str, dict[str, Any]]:
    """Walk a bundle once: (bundle hash, per entry {kind, sha256, bytes?, data?}).

    The bundle hash is sha256 over the sorted (relative path, content marker) pairs: a regular
    file's sha256, ``symlink:<target>``, ``special``, ``unreadable:<errno>``, and for a file over
    a limit ``oversize:<bytes>`` (never read). The bytes of the names in ``keep`` are returned
    with them: they are read once and used for everything that follows.
    """
    entries: list[list[str]] = []
    seen: dict[str, Any] = {}
    if folder.is_symlink():
        target = os.readlink(folder)
        marker = "symlink:" + target
        return hashlib.sha256(jsonio.canonical([[".", marker]])).hexdigest(), {}
    total = 0
    count = 0
    for rel, st in walk(folder):
        count += 1
        if count > limits.max_bundle_files:
            seen["(bundle)"] = {"kind": "too-many-files"}
            entries.append([".", f"over-limit:{limits.max_bundle_files}-files"])
            break
        if not is_utf8(rel):
            # Listed by its escaped form (a finding), with a marker no real name's entry has.
            shown = escaped_name(rel)
            seen[shown] = {"kind": "bad-name"}
            entries.append([shown, f"name-not-utf8:{st.st_mode:o}:{st.st_size}"])
            continue
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            try:
                marker = "symlink:" + clip(os.readlink(folder / rel), limits.max_path_chars)
            except OSError as exc:
                marker = f"unreadable:{exc.errno}"
            seen[rel] = {"kind": "symlink"}
            entries.append([rel, marker])
        elif stat.S_ISDIR(mode):
            continue
        elif not stat.S_ISREG(mode):
            seen[rel] = {"kind": "special"}
            entries.append([rel, "special"])
        elif st.st_size > limits.max_file_bytes or total + st.st_size > limits.max_bundle_bytes:
            over = "file" if st.st_size > limits.max_file_bytes else "bundle"
            seen[rel] = {"kind": "oversize", "bytes": st.st_size, "over": over}
            entries.append([rel, f"oversize:{st.st_size}"])
        else:
            data = _read_bounded(folder / rel, limits.max_file_bytes)
            if data is None:
                seen[rel] = {"kind": "unreadable"}
                entries.append([rel, "unreadable:read"])
                continue
            total += len(data)
            digest = hashlib.sha256(data).hexdigest()
            entry: dict[str, Any] = {"kind": "file", "sha256": digest, "bytes": len(data)}
            if rel in keep:
                entry["data"] = data
            seen[rel] = entry
            entries.append([rel, digest])
    entries.sort()
    return hashlib.sha256(jsonio.canonical(entries)).hexdigest(), seen


def bundle_hash(folder: Path, limits: Limits | None = None) -> str:
    """sha256 over (relative path, content marker) of every entry in the bundle (see :func:`scan`)."""
    return scan(folder, limits or Limits(), frozenset())[0]


def file_hashes(
    folder: Path,
    prefix: str,
    limit: int = Limits.max_file_bytes,
    names: tuple[str, ...] | None = None,
) -> list[tuple[str, str]]:
    """(path under the run folder, sha256) for every regular file below ``folder`` (only the
    top-level ``names`` when given) that is not a link and within ``limit`` bytes (for the
    attestation files)."""
    out: list[tuple[str, str]] = []
    if folder.is_symlink() or not folder.is_dir():
        return out
    if names is not None:
        found = []
        for name in names:
            try:
                found.append((name, os.lstat(folder / name)))
            except OSError:
                continue
        entries: Iterator[tuple[str, os.stat_result]] | list[tuple[str, os.stat_result]] = found
    else:
        entries = walk(folder)
    for rel, st in entries:
        if stat.S_ISREG(st.st_mode) and st.st_size <= limit:
            digest = _hash_bounded(folder / rel, limit)
            if digest is not None:
                shown = escaped_name(rel)  # a name that is not UTF-8 is listed escaped
                out.append((f"{prefix}/{shown}" if prefix else shown, digest))
    return sorted(out)


def normalise_eol(patch: bytes) -> tuple[bytes, bool]:
    """A patch whose first line ends in CRLF was saved through a CRLF filter: convert it back.

    Validation judges, and integration applies, the converted bytes.
    """
    end = patch.find(b"\n")
    if end > 0 and patch[end - 1 : end] == b"\r":
        return patch.replace(b"\r\n", b"\n"), True
    return patch, False


def binary_checks(patch: patchparse.Patch, git: GitSide, limits: Limits) -> list[list[str]]:
    """[path, ok | mismatch | unverifiable, why] for each binary section: git takes a postimage
    it already has from the object store instead of the patch's data, so the data must be
    what the section's index line declares."""
    out: list[list[str]] = []
    for f in patch.files:
        if not f.binary:
            continue
        path = f.new_path or f.old_path or ""
        base = None
        if f.old_oid and f.old_oid.strip("0"):
            base = gitops.cat_blob(git.repo, f.old_oid, limits.max_file_bytes)
        try:
            res = gitbinary.postimage(f, base, git.object_format, limits.max_file_bytes)
        except (ValueError, gitbinary.BinaryPatchError) as exc:
            res = gitbinary.Postimage(False, None, str(exc))
        verdict = "ok" if res.ok else ("mismatch" if res.oid is not None else "unverifiable")
        out.append([path, verdict, clip(res.reason, limits.max_text_chars)])
    return sorted(out)


def _clip_path(path: str, limits: Limits, problems: list[list[str]], where: str) -> str:
    if len(path) <= limits.max_path_chars:
        return path
    short = clip(path, limits.max_path_chars)
    problems.append(
        [
            where,
            "path-too-long",
            f"a path of {len(path)} characters (over the limit of {limits.max_path_chars}): {short}",
        ]
    )
    return short


@dataclass(frozen=True)
class GitSide:
    """The repository whose git reads the patches: its own reading, and the preimages of
    binary deltas (from the object store, by full id only)."""

    repo: Path
    object_format: str = "sha1"


# Bundle entries nothing is read from, by kind: (rule, why). A FIFO, socket or device anywhere
# in the bundle is never opened (a FIFO would hang the read), and never passed over either (a
# log no index lists included).
_ENTRY_PROBLEMS = {
    "bad-name": (
        "name-not-utf8",
        "a file name that is not valid UTF-8 (shown with \\x escapes): no bundle file has one; "
        "remove it",
    ),
    "special": (
        "bundle-file-special",
        "not a regular file (a FIFO, socket or device): nothing is read from it; remove it",
    ),
}


def gather_facts(
    run_dir: Path,
    worker: str,
    base: BaseTree,
    limits: Limits | None = None,
    store: Store | None = None,
    git: GitSide | None = None,
    on_patch: Callable[[patchparse.Patch], None] | None = None,
) -> BundleFacts:
    """Read one bundle and return everything the judgement needs, as plain JSON.

    ``store`` keeps the judged bytes (the snapshot) and returns their sha256. With ``git``,
    git's own reading of DIFF.patch is compared with ours and every binary postimage is
    verified against the section's own data. ``on_patch`` receives DIFF.patch as read (the
    snapshot's bytes), for Gate 0 to review without reading it again.
    """
    with contextlib.ExitStack() as stack:  # git's early reading of DIFF.patch ends with it
        limits = limits or Limits()
        text = limits.max_text_chars
        folder = run_dir / worker_dirname(worker)
        facts: BundleFacts = {
            "version": FACTS_VERSION,
            "worker": worker,
            "missing": [],
            "symlinks": [],
            "json_errors": [],
            "schema_errors": [],
            "status": None,
            "status_reason": "",
            "ids": {},
            "files_changed": [],
            "touched": [],
            "added": [],
            "patch_error": None,
            "section_hashes": {},
            "scope": None,
            "depends_on": [],
            "log_problems": [],
            "base_case_variants": {},
            "bundle_hash": "",
            "run_id": None,
            "files_sha256": {},
            "apply_sha256": None,
            "eol_normalised": False,
            "limit_problems": [],
            "deleted": [],
            "base_dir_clashes": {},
            "links": [],
            "gitlinks": [],
        }
        limit_problems: list[list[str]] = []
        caps = Caps(limits, limit_problems)
        keep = frozenset(WORKER_FILES)
        digest, seen = scan(folder, limits, keep)
        facts["bundle_hash"] = digest
        if folder.is_symlink() or (folder / "LOGS").is_symlink():
            # A symlinked bundle folder (or LOGS/) could point anywhere: read nothing through it.
            facts["symlinks"].append(worker_dirname(worker) if folder.is_symlink() else "LOGS")
            return facts
        view = _start_view(stack, seen.get("DIFF.patch"), git, limits)
        if "(bundle)" in seen:
            limit_problems.append(
                [
                    worker_dirname(worker),
                    "bundle-too-many-files",
                    f"more than {limits.max_bundle_files} entries in the bundle folder",
                ]
            )
        for rel, entry in sorted(seen.items()):
            if entry["kind"] in _ENTRY_PROBLEMS:
                rule, why = _ENTRY_PROBLEMS[entry["kind"]]
                limit_problems.append([clip(rel, limits.max_path_chars), rule, why])
            if entry["kind"] == "oversize":
                rule = "bundle-file-too-large" if entry["over"] == "file" else "bundle-too-large"
                limit = (
                    limits.max_file_bytes if entry["over"] == "file" else limits.max_bundle_bytes
                )
                what = "the file limit" if entry["over"] == "file" else "the bundle's total limit"
                limit_problems.append(
                    [rel, rule, f"{entry['bytes']} bytes: over {what} of {limit} bytes; not read"]
                )
        patch_bytes = b""
        docs: dict[str, Any] = {}
        for name in WORKER_FILES:
            entry = seen.get(name)
            kind = entry["kind"] if entry is not None else "missing"
            if kind == "symlink":
                facts["symlinks"].append(name)
                continue
            if kind != "file":
                if kind != "oversize":  # an oversize file is a limit problem, not a missing one
                    facts["missing"].append(name)
                continue
            assert entry is not None
            data: bytes = entry["data"]
            if name == "DIFF.patch":
                patch_bytes = data
                continue
            facts["files_sha256"][name] = store(data) if store is not None else entry["sha256"]
            if name in JSON_FILES:
                try:
                    doc = jsonio.loads_document(data, unique_keys=True)
                except ValueError as exc:
                    first = str(exc).splitlines()[0] if str(exc) else "invalid JSON"
                    facts["json_errors"].append([name, clip(first, text)])
                    continue
                problems = schemas.errors(JSON_FILES[name], doc)
                if problems:
                    rows = [[name, where, msg] for where, msg in problems]
                    for row in caps.items(rows, f"{name} (schema errors)", _row_size(text)):
                        facts["schema_errors"].append(
                            [name, clip(row[1], text), clip(row[2], text)]
                        )
                    continue
                docs[name] = doc
        if "STATUS.json" in docs:
            st_doc = docs["STATUS.json"]
            facts["run_id"] = st_doc["run_id"]
            facts["status"] = st_doc["status"]
            facts["status_reason"] = clip(st_doc.get("reason", ""), text)
            facts["ids"]["STATUS.json"] = st_doc["worker"]
        if "SCOPE_LOCK.json" in docs:
            sl = docs["SCOPE_LOCK.json"]
            facts["scope"] = {
                "allow": caps.texts(sl["allow"], "SCOPE_LOCK.json allow"),
                "deny": caps.texts(sl["deny"], "SCOPE_LOCK.json deny"),
                "shared": caps.texts(sl["shared"], "SCOPE_LOCK.json shared"),
            }
            facts["ids"]["SCOPE_LOCK.json"] = sl["worker"]
        if "HANDOFF_NOTE.json" in docs:
            facts["depends_on"] = sorted(
                caps.texts(docs["HANDOFF_NOTE.json"]["depends_on"], "HANDOFF_NOTE.json depends_on")
            )
            facts["ids"]["HANDOFF_NOTE.json"] = docs["HANDOFF_NOTE.json"]["worker"]
        if "FILES_CHANGED.json" in docs:
            facts["files_changed"] = _listed(docs["FILES_CHANGED.json"]["files"], caps)
        if (
            "DIFF.patch" not in facts["missing"]
            and "DIFF.patch" not in facts["symlinks"]
            and (seen.get("DIFF.patch", {}).get("kind") == "file")
        ):
            applied, converted = normalise_eol(patch_bytes)
            facts["eol_normalised"] = converted
            facts["files_sha256"]["DIFF.patch"] = hashlib.sha256(patch_bytes).hexdigest()
            facts["apply_sha256"] = (
                store(applied) if store is not None else hashlib.sha256(applied).hexdigest()
            )
            try:
                patch = patchparse.parse(applied, limits.max_patch_lines, limits.max_patch_files)
            except patchparse.PatchLimitError as exc:
                unread = "not read" if exc.rule == "patch-too-many-lines" else "not read further"
                limit_problems.append(["DIFF.patch", exc.rule, f"{exc}; {unread}"])
            except patchparse.PatchParseError as exc:
                facts["patch_error"] = clip(str(exc), text)
            else:
                if patch.stray is not None:
                    # Only when present: facts recorded by earlier releases have no such key.
                    facts["stray_text"] = clip(patch.stray, text)
                _patch_facts(facts, caps, patch, applied, git, base, view)
                if on_patch is not None:
                    on_patch(patch)
        deleted = set(facts["deleted"])
        aliases, clashes = base.clashes(facts["added"], deleted)
        facts["base_case_variants"] = aliases
        facts["base_dir_clashes"] = clashes
        short = base.short_aliases(facts["added"])
        if short:
            # Only when present: a bundle without such names records what earlier releases did.
            facts["base_short_aliases"] = short
        if "LOGS/INDEX.json" in docs:
            path_size = _row_size(limits.max_path_chars)
            listed = caps.items(
                docs["LOGS/INDEX.json"]["logs"],
                "LOGS/INDEX.json logs",
                lambda i: path_size([i["path"]]),
            )
            for item in listed:
                rel = clip(item["path"], limits.max_path_chars)
                try:
                    normalise_repo_path(rel)
                except PathRuleError as exc:
                    facts["log_problems"].append([rel, "log-path-invalid", clip(str(exc), text)])
                    continue
                log = seen.get(f"LOGS/{rel}")
                if log is None or log["kind"] not in ("file", "oversize"):
                    facts["log_problems"].append(
                        [
                            rel,
                            "log-missing",
                            "listed in LOGS/INDEX.json but absent or not a regular file",
                        ]
                    )
                    continue
                if log["kind"] == "oversize":
                    continue  # reported as a limit problem
                if log["sha256"] != item["sha256"] or log["bytes"] != item["bytes"]:
                    facts["log_problems"].append(
                        [
                            rel,
                            "log-hash-mismatch",
                            f"sha256 {log['sha256'][:12]}…/{log['bytes']} bytes, index says "
                            f"{item['sha256'][:12]}…/{item['bytes']}",
                        ]
                    )
        facts["files_sha256"] = dict(sorted(facts["files_sha256"].items()))
        # The limit problems are bounded too (a bundle folder of 100,000 badly named files).
        overflow: list[list[str]] = []
        facts["limit_problems"] = Caps(limits, overflow).items(
            limit_problems, "(limit findings)", _row_size(limits.max_path_chars)
        )
        facts["limit_problems"].extend(overflow)
        return facts


def _listed(files: Sequence[str], caps: Caps) -> list[str]:
    """FILES_CHANGED within the caps; none when it lists more paths than ``max_patch_files``
    sections could touch (a rename touches two), which is a limit problem of its own."""
    most = 2 * caps.limits.max_patch_files
    if len(files) > most:
        caps.problems.append(
            [
                "FILES_CHANGED.json",
                "patch-too-many-files",
                f"{len(files)} paths listed: over the limit of {most} (twice "
                "limits.max_patch_files); not read",
            ]
        )
        return []
    return caps.paths(files, "FILES_CHANGED.json files")


def recorded_paths(paths: Sequence[str], limits: Limits) -> dict[str, Any]:
    """``files`` (the leading paths within the list caps, each clipped) and ``files_count``
    (all of them): how a worker's changed paths are recorded in an event and shown."""
    kept = Caps(limits, []).paths(paths, "files", report=False)
    return {"files": kept, "files_count": len(paths)}


def _row_size(limit: int) -> Callable[[Sequence[str]], int]:
    """The characters of a row of strings, each counted as clipped to ``limit``."""
    return lambda row: sum(min(len(x), limit) for x in row)


def _start_view(
    stack: contextlib.ExitStack,
    entry: dict[str, Any] | None,
    git: GitSide | None,
    limits: Limits,
) -> Callable[[], gitview.GitView] | None:
    """Start git's reading of DIFF.patch (the bytes as they will be judged) as soon as they
    are read, so it runs on other cores while we check the bundle; held open on ``stack``.
    None (git reads later, if at all) unless there is git to ask and a regular DIFF.patch that
    cannot be over a limit: git reads such a patch only once we have (a million tiny
    sections would hold two gits in gigabytes)."""
    if git is None or entry is None or entry["kind"] != "file":
        return None
    applied, _ = normalise_eol(entry["data"])
    if patchparse.may_exceed(applied, limits.max_patch_lines, limits.max_patch_files):
        return None
    return stack.enter_context(gitops.apply_view_started(applied, max_binary=limits.max_file_bytes))


def _patch_facts(
    facts: BundleFacts,
    caps: Caps,
    patch: patchparse.Patch,
    applied: bytes,
    git: GitSide | None,
    base: BaseTree,
    view: Callable[[], gitview.GitView] | None,
) -> None:
    """The facts DIFF.patch gives, each list within the caps; ``view`` waits for git's
    reading of the same bytes when it was started early (else git reads them now)."""
    limits = caps.limits
    text = limits.max_text_chars
    where = "DIFF.patch"
    facts["touched"] = caps.paths(patch.touched(), f"{where} (touched paths)")
    facts["added"] = sorted(
        caps.paths(
            sorted({f.new_path for f in patch.files if f.new_path and f.new_path != f.old_path}),
            where,
            report=False,
        )
    )
    deleted = {
        f.old_path
        for f in patch.files
        if f.old_path is not None and f.status in ("deleted", "renamed")
    }
    facts["deleted"] = sorted(
        set(caps.paths(sorted(deleted), where, report=False)) - set(facts["added"])
    )
    links = [
        [f.new_path, f.symlink_target]
        for f in patch.files
        if f.new_path is not None and f.symlink_target is not None
    ]
    facts["links"] = [
        [_clip_path(p, limits, [], where), clip(t, text)]
        for p, t in caps.items(links, f"{where} (symlinks)", _row_size(text))
    ]
    if facts["links"]:
        # What the new links may resolve through (core.links): the base's own links.
        facts["base_links"] = [
            [_clip_path(p, limits, [], "base"), clip(t, text)]
            for p, t in caps.items(list(base.links), "base (symlinks)", _row_size(text))
        ]
    facts["gitlinks"] = sorted(
        caps.paths(
            [f.new_path for f in patch.files if f.new_path is not None and f.gitlink],
            where,
            report=False,
        )
    )
    if git is not None:
        gits = (
            view()
            if view is not None
            else gitops.apply_view(applied, max_binary=limits.max_file_bytes)
        )
        views = gitview.compare_views(patchparse.git_view(patch), gits)
        facts["patch_disagreements"] = caps.texts(views, f"{where} (disagreements with git)")
        facts["binary_checks"] = caps.rows(
            binary_checks(patch, git, limits), f"{where} (binary sections)"
        )
    sections = sorted(patch.sections_by_path().items())
    kept = caps.items(
        sections, where, lambda s: min(len(s[0]), limits.max_path_chars), report=False
    )
    facts["section_hashes"] = {
        _clip_path(p, limits, [], where): hashlib.sha256(raw).hexdigest() for p, raw in kept
    }
