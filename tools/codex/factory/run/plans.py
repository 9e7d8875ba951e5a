"""Load and check plans: the default plan, a plan file, a run manifest's recorded plan."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tools.codex.factory.core.decisions import merge_order
from tools.codex.factory.core.globs import validate_glob
from tools.codex.factory.core.ids import validate_worker_id
from tools.codex.factory.errors import UsageError
from tools.codex.factory.infra import jsonio, schemas
from tools.codex.factory.records.plan import Plan, WorkerPlan

# The embedded default: four disjoint scopes a typical repository splits into.
DEFAULT_SCOPES: dict[str, dict[str, Any]] = {
    "A": {
        "task": "Source code changes.",
        "allow": ["src/**", "lib/**", "app/**", "tools/**", "pkg/**"],
    },
    "B": {
        "task": "Tests.",
        "allow": ["tests/**", "test/**"],
    },
    "C": {
        "task": "Documentation.",
        "allow": ["docs/**", "*.md", "*.rst", "*.txt"],
    },
    "D": {
        "task": "Build, CI and configuration.",
        "allow": [
            ".ci/**",
            ".github/**",
            "*.toml",
            "*.cfg",
            "*.ini",
            "*.json",
            "*.yml",
            "*.yaml",
            "Makefile",
        ],
    },
}


def default_plan(ids: list[str]) -> Plan:
    """Default scopes for A-D; extra configured workers get a scope of their own folder."""
    workers = []
    for wid in ids:
        spec = DEFAULT_SCOPES.get(
            wid, {"task": f"Changes under work/{wid}/.", "allow": [f"work/{wid}/**"]}
        )
        workers.append(WorkerPlan(wid, spec["task"], tuple(spec["allow"])))
    return Plan(
        tuple(sorted(workers, key=lambda w: w.id)), "default"
    )  # config order must not matter


def load_plan(path: Path) -> Plan:
    label = f"plan {path}"
    doc = jsonio.read_json(path, label, unique_keys=True)
    problems = schemas.errors("plan", doc)
    if problems:
        where, msg = problems[0]
        raise UsageError(f"{label}: {where}: {msg}")
    return from_dict(doc, label)


def from_dict(doc: dict[str, Any], label: str) -> Plan:
    workers = []
    seen: set[str] = set()
    for i, w in enumerate(doc["workers"]):
        wid = validate_worker_id(w["id"], f"{label}: workers[{i}].id")
        if wid in seen:
            raise UsageError(f"{label}: workers[{i}].id: duplicate worker {wid!r}")
        seen.add(wid)
        for key in ("allow", "deny", "shared", "special"):
            for j, pattern in enumerate(w.get(key, [])):
                try:
                    validate_glob(pattern)
                except ValueError as exc:
                    raise UsageError(f"{label}: workers[{i}].{key}[{j}]: {exc}") from None
        workers.append(
            WorkerPlan(
                wid,
                w.get("task", ""),
                tuple(w["allow"]),
                tuple(w.get("deny", [])),
                tuple(w.get("shared", [])),
                tuple(w.get("depends_on", [])),
                w.get("agent"),
                tuple(w.get("special", [])),
            )
        )
    for i, w in enumerate(workers):
        for dep in w.depends_on:
            if dep not in seen:
                raise UsageError(f"{label}: workers[{i}].depends_on: unknown worker {dep!r}")
    _, cycle = merge_order({w.id: list(w.depends_on) for w in workers})
    if cycle:
        raise UsageError(f"{label}: depends_on: {cycle}")
    return Plan(tuple(sorted(workers, key=lambda w: w.id)), label)


def digest(plan: Plan) -> str:
    """sha256 of the plan's canonical JSON (``plan_hash``)."""
    return hashlib.sha256(jsonio.canonical(plan.as_dict())).hexdigest()
