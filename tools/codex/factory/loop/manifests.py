"""A crank's manifest from disk: the units, their specs (``units/<id>.md`` beside the
manifest: scope in the frontmatter, the whole file given to the unit's agent) and the plan of
one worker per unit (``U<id>``), read once, within limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.codex.factory.core import manifest as core_manifest
from tools.codex.factory.errors import FactoryError, UsageError
from tools.codex.factory.infra import fsutil, jsonio, schemas
from tools.codex.factory.infra.writer import GuardedWriter
from tools.codex.factory.records.manifest import Manifest, UnitScope
from tools.codex.factory.records.plan import Plan
from tools.codex.factory.run import plans

MAX_SPEC_BYTES = 256 * 1024


@dataclass(frozen=True)
class Loaded:
    manifest: Manifest
    data: bytes  # the file's bytes (the crank's copy is these, with progress marked)
    markdown: bool
    plan: Plan
    scopes: dict[str, UnitScope]


def load(path: Path) -> Loaded:
    """The manifest at ``path`` (markdown, or ``.json``) and the plan it makes; every problem is
    a usage error naming the file, the line or field, and the rule."""
    data = fsutil.read_file(path, str(path), limit=core_manifest.MAX_BYTES)
    markdown = path.suffix.lower() != ".json"
    if markdown:
        found = core_manifest.parse(data, path.name)
    else:
        try:
            doc = jsonio.loads_document(data)
        except ValueError as exc:
            raise UsageError(f"{path.name}: not valid JSON ({exc})") from None
        problems = schemas.errors("crank_manifest", doc)
        if problems:
            where, msg = problems[0]
            raise UsageError(f"{path.name}: {where}: {msg}")
        found = core_manifest.from_doc(doc, path.name)
    scopes: dict[str, UnitScope] = {}
    workers: list[dict[str, Any]] = []
    for unit in found.units:
        spec = path.parent / "units" / f"{unit.id}.md"
        task = f"Unit {unit.id}: {unit.title}"
        try:
            text = fsutil.read_file(spec, f"units/{unit.id}.md", limit=MAX_SPEC_BYTES)
        except (FactoryError, OSError):
            if spec.exists():
                raise
            text = None
        if text is None:  # no spec: the default scope, everything not protected
            scope = UnitScope(unit=unit.id, allow=("**",))
        else:
            scope = core_manifest.parse_unit_scope(text, f"units/{unit.id}.md", unit.id)
            task += "\n\n" + text.decode("utf-8", "replace")
        scopes[unit.id] = scope
        worker: dict[str, Any] = {
            "id": core_manifest.worker_id(unit.id),
            "task": task,
            "allow": list(scope.allow),
            "deny": list(scope.deny),
            "shared": list(scope.shared),
        }
        if scope.agent is not None:
            worker["agent"] = {"preset": scope.agent}
        workers.append(worker)
    plan = plans.from_dict({"workers": workers}, f"manifest {path.name}")
    return Loaded(found, data, markdown, plan, scopes)


def marked(loaded: Loaded, state: dict[str, str], status: str) -> bytes:
    """The manifest's bytes with the completed units checked and its status set."""
    done = [u for u, s in state.items() if s == "completed"]
    updated = core_manifest.mark(loaded.manifest, done, status)
    if loaded.markdown:
        return core_manifest.render(loaded.data, "manifest", updated)
    return jsonio.pretty(dict(core_manifest.to_doc(updated)))


def mark_file(path: Path, loaded: Loaded, state: dict[str, str], status: str) -> str:
    """Mark progress in the operator's manifest as it is now (their edits kept): only the
    checkboxes and the status change; a file whose units or groups changed since the crank
    started is left alone. The line to tell the operator."""
    try:
        now = fsutil.read_file(path, str(path), limit=core_manifest.MAX_BYTES)
        if loaded.markdown:
            found = core_manifest.parse(now, path.name)
        else:
            doc = jsonio.loads_document(now)
            problems = schemas.errors("crank_manifest", doc)
            if problems:
                raise UsageError(f"{problems[0][0]}: {problems[0][1]}")
            found = core_manifest.from_doc(doc, path.name)

        def shape(m: Manifest) -> list[tuple[str, str, tuple[str, ...]]]:
            return [(u.id, u.title, u.after) for u in m.units]

        if shape(found) != shape(loaded.manifest):
            raise UsageError("its units changed since the crank started")
        if found.groups != loaded.manifest.groups:
            raise UsageError("its execution groups changed since the crank started")
        data = marked(
            Loaded(found, now, loaded.markdown, loaded.plan, loaded.scopes), state, status
        )
    except (FactoryError, OSError, ValueError) as exc:
        return f"factory: warning: {path} not marked: {exc}"
    GuardedWriter(path.parent).write(path.name, data)
    return f"factory: marked progress in {path} (the only write outside the run folder)"
