"""Layered configuration: defaults < factory.config.json < FACTORY_* env < CLI options.

Every leaf value (``section.key``) remembers where it came from, for ``config show``
and for error messages that name the file, key and source.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.codex.factory import jsonio, schemas
from tools.codex.factory.errors import UsageError
from tools.codex.factory.ids import validate_kind, validate_worker_id
from tools.codex.factory.paths import PathRuleError, normalise_repo_path

CONFIG_REL = "tools/codex/factory/factory.config.json"
ENV_PREFIX = "FACTORY_"
ENV_RESERVED = frozenset({"FACTORY_NOW"})

DEFAULTS: dict[str, dict[str, Any]] = {
    "run": {
        "kind": "factory",
        "base_ref": "HEAD",
        "allow_identical_patch_overlap": False,
        "case_collisions": "block",
        "branch_prefix": "factory",
        "keep_sandbox": False,
    },
    "paths": {
        "runs_dir": "tools/codex/runs",
        "worktrees_dir": None,
    },
    "workers": {
        "ids": ["A", "B", "C", "D"],
        "max_parallel": 4,
        "timeout_s": 1800,
        "agent": None,
        "agents": {},
    },
    "checks": {
        "required": [
            {
                "name": "diff-whitespace",
                "argv": ["git", "diff", "--check", "{base_commit}"],
                "timeout_s": 120,
            }
        ],
        "advisory": [],
    },
    "ledger": {
        "path": None,
        "fsync": True,
        "lock_timeout_s": 30,
    },
    "security": {
        "protected_paths": ["scenarios/**", "tools/codex/factory/**"],
        "holdout_paths": ["scenarios/"],
    },
    "feature_flags": {
        "record_check_output_in_ledger": False,
        "strict_handoff_dependencies": False,
    },
}


@dataclass
class Config:
    values: dict[str, dict[str, Any]]
    origins: dict[str, str] = field(default_factory=dict)
    file: Path | None = None

    def get(self, dotted: str) -> Any:
        section, key = dotted.split(".", 1)
        return self.values[section][key]

    def origin(self, dotted: str) -> str:
        return self.origins.get(dotted, "default")

    @property
    def runs_rel(self) -> str:
        return str(self.get("paths.runs_dir")).rstrip("/")

    @property
    def ledger_rel(self) -> str:
        configured = self.get("ledger.path")
        return str(configured) if configured else f"{self.runs_rel}/factory_ledger.jsonl"

    def rows(self) -> list[dict[str, Any]]:
        """Flat, sorted (key, value, origin) rows for ``config show``."""
        out = []
        for section in sorted(self.values):
            for key in sorted(self.values[section]):
                dotted = f"{section}.{key}"
                out.append({"key": dotted, "value": self.values[section][key], "origin": self.origin(dotted)})
        return out

    def effective(self) -> dict[str, Any]:
        return copy.deepcopy(self.values)


def _parse_env_value(raw: str, default: Any) -> Any:
    """JSON if it parses (numbers, booleans, lists...), else the raw text; a key whose
    default is a string always takes the text verbatim (a base ref ``1234567`` or a kind
    ``2026`` is not a number)."""
    if isinstance(default, str):
        return raw
    try:
        return jsonio.loads(raw)
    except Exception:
        return raw


def _env_layer(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    found: dict[str, tuple[Any, str]] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in ENV_RESERVED:
            continue
        rest = name[len(ENV_PREFIX):]
        if "__" not in rest:
            raise UsageError(
                f"env {name}: not a config variable; use FACTORY_<SECTION>__<KEY>, e.g. FACTORY_RUN__KIND"
            )
        section, key = rest.split("__", 1)
        section, key = section.lower(), key.lower()
        if section not in DEFAULTS:
            raise UsageError(f"env {name}: unknown config section {section!r}")
        if key not in DEFAULTS[section]:
            raise UsageError(f"env {name}: unknown config key {section}.{key}")
        found[f"{section}.{key}"] = (_parse_env_value(environ[name], DEFAULTS[section][key]), f"env:{name}")
    return found


def _file_layer(path: Path) -> dict[str, tuple[Any, str]]:
    label = f"config file {path}"
    doc = jsonio.read_json(path, label)
    problems = schemas.errors("factory_config", doc)
    if problems:
        where, msg = problems[0]
        raise UsageError(f"{label}: key {where}: {msg} (source: file)")
    found: dict[str, tuple[Any, str]] = {}
    for section, body in doc.items():
        if section == "schema_version":
            continue
        for key, value in body.items():
            found[f"{section}.{key}"] = (value, f"file:{CONFIG_REL}")
    return found


def load(
    repo: Path,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the effective config for ``repo``; raise UsageError naming file, key and source."""
    values = copy.deepcopy(DEFAULTS)
    origins: dict[str, str] = {}
    path = repo / CONFIG_REL
    layers: list[dict[str, tuple[Any, str]]] = []
    file_used: Path | None = None
    if path.is_file():
        layers.append(_file_layer(path))
        file_used = path
    layers.append(_env_layer(os.environ if environ is None else environ))
    layers.append({k: (v, f"cli:--{k.split('.', 1)[1].replace('_', '-')}") for k, v in (cli or {}).items() if v is not None})
    for layer in layers:
        for dotted, (value, origin) in layer.items():
            section, key = dotted.split(".", 1)
            values[section][key] = value
            origins[dotted] = origin
    cfg = Config(values, origins, file_used)
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    doc: dict[str, Any] = {"schema_version": schemas.SCHEMA_VERSION, **cfg.values}
    problems = schemas.errors("factory_config", doc)
    if problems:
        where, msg = problems[0]
        dotted = ".".join(where.replace("[", ".").split(".")[:2])
        raise UsageError(f"config key {where}: {msg} (source: {_describe(cfg, dotted)})")
    kind = cfg.get("run.kind")
    validate_kind(kind, f"config run.kind (source: {_describe(cfg, 'run.kind')})")
    ids = cfg.get("workers.ids")
    for wid in ids:
        validate_worker_id(wid, f"config workers.ids (source: {_describe(cfg, 'workers.ids')})")
    if len(set(ids)) != len(ids):
        raise UsageError(f"config workers.ids: duplicate worker IDs in {ids} (source: {_describe(cfg, 'workers.ids')})")
    for key in ("paths.runs_dir", "ledger.path"):
        value = cfg.get(key)
        if value is None:
            continue
        try:
            normalise_repo_path(value)
        except PathRuleError as exc:
            raise UsageError(f"config {key}: {exc} (source: {_describe(cfg, key)})") from None


def _describe(cfg: Config, dotted: str) -> str:
    origin = cfg.origin(dotted)
    if origin.startswith("file:"):
        return f"file {cfg.file}"
    return origin
