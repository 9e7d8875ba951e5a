"""Load the JSON Schemas in ``schemas/`` and validate documents with one-line errors."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from tools.codex.factory.errors import FactoryError
from tools.codex.factory.infra import jsonio, schemacheck

SCHEMA_VERSION = 1


def schema_dir() -> Path:
    """The JSON Schemas: ``_schemas/`` beside this module in an installed wheel (pyproject
    maps the top-level ``schemas/`` there), else ``schemas/`` at the project root of a source
    checkout or editable install (the package lives at tools/codex/factory)."""
    here = Path(__file__).resolve().parents[1]  # the package folder
    installed = here / "_schemas"
    if installed.is_dir():
        return installed
    return here.parents[2] / "schemas"


@functools.cache
def load(name: str) -> dict[str, Any]:
    path = schema_dir() / f"{name}.schema.json"
    try:
        data = jsonio.loads(path.read_bytes())
    except FileNotFoundError:
        raise FactoryError(f"schema {path} is missing: reinstall the factory") from None
    if not isinstance(data, dict):
        raise FactoryError(f"schema {path} is not a JSON object")
    return data


@functools.cache
def _registry() -> Any:
    """All schemas by ``$id``, so one schema can ``$ref`` another by relative name."""
    from referencing import Registry, Resource

    resources = []
    for path in sorted(schema_dir().glob("*.schema.json")):
        doc = load(path.name.removesuffix(".schema.json"))
        resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


def _branch_key(branch: Any) -> tuple[str, Any] | None:
    """(member, value) when ``branch`` is ``{"if": {"properties": {member: {"const": value}},
    "required": [member]}, "then": ...}`` and nothing else, the shape of a tagged union."""
    if not isinstance(branch, dict) or sorted(branch) != ["if", "then"]:
        return None
    cond = branch["if"]
    if not isinstance(cond, dict) or sorted(cond) != ["properties", "required"]:
        return None
    props, required = cond["properties"], cond["required"]
    if not isinstance(props, dict) or len(props) != 1 or required != list(props):
        return None
    member, rule = next(iter(props.items()))
    if not isinstance(rule, dict) or list(rule) != ["const"] or not isinstance(rule["const"], str):
        return None
    return member, rule["const"]


@functools.cache
def _tagged(name: str) -> tuple[str, dict[str, list[Any]]] | None:
    """A schema whose ``allOf`` is only tagged-union branches on one member: the branches by
    tag value. Validating a document against the schema without ``allOf`` plus the branches
    of its tag is the same judgement (a branch whose ``if`` fails applies nothing), but does
    not evaluate every other branch's condition."""
    branches = load(name).get("allOf")
    if not isinstance(branches, list) or not branches:
        return None
    keys = [_branch_key(b) for b in branches]
    members = {k[0] for k in keys if k is not None}
    if None in keys or len(members) != 1:
        return None
    by_tag: dict[str, list[Any]] = {}
    for key, branch in zip(keys, branches, strict=True):
        assert key is not None
        by_tag.setdefault(key[1], []).append(branch["then"])
    return members.pop(), by_tag


@functools.cache
def _schema(name: str, tag: str | None = None) -> dict[str, Any]:
    """The schema a document is judged by: a tagged union's branches for ``tag`` only."""
    schema = load(name)
    tagged = _tagged(name)
    if tagged is not None:
        schema = {k: v for k, v in schema.items() if k != "allOf"}
        if tag is not None and tag in tagged[1]:
            schema["allOf"] = tagged[1][tag]
    return schema


@functools.cache
def _validator(name: str, tag: str | None = None) -> Any:
    import jsonschema  # lazy: keeps `--help` fast, and a valid document never needs it

    schema = _schema(name, tag)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=_registry(), format_checker=cls.FORMAT_CHECKER)


@functools.cache
def _check(name: str, tag: str | None = None) -> schemacheck.Check | None:
    return schemacheck.compile_schema(_schema(name, tag), name, load)


def _tag(name: str, doc: Any) -> str | None:
    tagged = _tagged(name)
    if tagged is None:
        return None
    tag = doc.get(tagged[0]) if isinstance(doc, dict) else None
    return tag if isinstance(tag, str) and tag in tagged[1] else None


def pointer(path: Any) -> str:
    """A JSON path like ``checks.required[0].argv`` for messages."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _specific(err: Any) -> list[Any]:
    """The errors that say what is wrong: for a ``oneOf``/``anyOf`` whose alternatives are of
    different types (an agent spec or null), the errors of the one alternative of the right
    type (the field and rule), not "is not valid under any of the given schemas"."""
    if err.validator not in ("oneOf", "anyOf") or not err.context:
        return [err]
    branches: dict[Any, list[Any]] = {}
    for sub in err.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [
        subs
        for subs in branches.values()
        if not all(s.validator == "type" and s.absolute_path == err.absolute_path for s in subs)
    ]
    if len(fitting) != 1:
        if not fitting and len(branches) == len(err.context):  # one type error per alternative
            err.message = f"{err.instance!r} is not of type " + " or ".join(
                repr(s.validator_value) for s in err.context
            )
        return [err]
    return [e for sub in fitting[0] for e in _specific(sub)]


def errors(name: str, doc: Any) -> list[tuple[str, str]]:
    """Every violation as (json path, message), sorted so reports are stable."""
    if not jsonio.depth_ok(doc):  # the validator recurses: refuse what would exhaust it
        return [("(top level)", f"nested deeper than {jsonio.MAX_DEPTH} levels")]
    tag = _tag(name, doc)
    if schemacheck.valid(_check(name, tag), doc):  # certainly valid: no jsonschema needed
        return []
    found: list[tuple[str, str]] = []
    for err in _validator(name, tag).iter_errors(doc):
        found.extend((pointer(e.absolute_path), e.message) for e in _specific(err))
    return sorted(found)
