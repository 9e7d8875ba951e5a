"""Schema validation: a tagged union is judged per tag exactly as the whole schema judges it."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource

from tools.codex.factory.infra import schemacheck, schemas


def full_errors(name: str, doc: Any) -> list[tuple[str, str]]:
    """The whole schema, every branch evaluated: the reference judgement."""
    registry: Registry[Any] = Registry().with_resources(
        (d["$id"], Resource.from_contents(d))
        for d in (schemas.load(p.name.removesuffix(".schema.json"))
                  for p in sorted(schemas.schema_dir().glob("*.schema.json")))
    )  # fmt: skip
    schema = schemas.load(name)
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)
    found: list[tuple[str, str]] = []
    for err in validator.iter_errors(doc):
        found.extend((schemas.pointer(e.absolute_path), e.message) for e in schemas._specific(err))
    return sorted(found)


EVENT = schemas.load("ledger_event")
TYPES = sorted(EVENT["properties"]["event_type"]["enum"])
MEMBERS = sorted(
    {m for b in EVENT["allOf"] for m in b["then"]["properties"]["payload"].get("properties", {})}
)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)


def test_the_event_schema_is_a_tagged_union_so_the_fast_path_is_taken() -> None:
    assert schemas._tagged("ledger_event") is not None
    assert schemas._tagged("factory_config") is None


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    event_type=st.sampled_from(TYPES) | st.text(max_size=6) | st.integers() | st.none(),
    payload=st.dictionaries(st.sampled_from(MEMBERS), VALUES, max_size=6) | VALUES,
    extra=st.dictionaries(st.sampled_from(["seq", "stage", "run_id", "x"]), VALUES, max_size=2),
    drop_type=st.booleans(),
)
def test_per_tag_validation_equals_the_whole_schema(
    event_type: Any, payload: Any, extra: dict[str, Any], drop_type: bool
) -> None:
    doc: dict[str, Any] = {
        "seq": 1,
        "ts_utc": "2026-01-01T00:00:00.000000Z",
        "event_type": event_type,
        "run_id": "r",
        "stage": "launch",
        "payload": payload,
        "prev_hash": "0" * 64,
        "hash": "0" * 64,
        **extra,
    }
    if drop_type:
        del doc["event_type"]
    assert schemas.errors("ledger_event", doc) == full_errors("ledger_event", doc)


@given(doc=VALUES)
def test_any_json_value_is_judged_the_same(doc: Any) -> None:
    assert schemas.errors("ledger_event", doc) == full_errors("ledger_event", doc)


def test_a_document_too_deep_to_validate_is_an_error_not_a_crash() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    assert schemas.errors("files_changed", {"schema_version": 1, "files": deep}) == [
        ("(top level)", "nested deeper than 64 levels")
    ]


# -- the fast check (infra/schemacheck.py) never calls valid what jsonschema rejects ----------

NAMES = sorted(p.name.removesuffix(".schema.json") for p in schemas.schema_dir().glob("*.json"))
JUNK = st.none() | st.booleans() | st.integers(-2, 70) | st.floats(-1, 2) | st.text(max_size=3)


def _resolve(ref: str, root: str) -> tuple[Any, str]:
    file, _, pointer = ref.partition("#")
    if file:
        root = file.removesuffix(".schema.json")
    target: Any = schemas.load(root)
    for part in [p for p in pointer.split("/") if p]:
        target = target[part]
    return target, root


def _merged(schema: dict[str, Any], branch: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with one ``if``/``then`` branch's members folded in (a tagged union's case)."""
    props = dict(schema.get("properties", {}))
    for part in (branch.get("if", {}), branch.get("then", {})):
        props.update(part.get("properties", {}))
    required = {*schema.get("required", []), *branch.get("then", {}).get("required", [])}
    rest = {k: v for k, v in schema.items() if k not in ("allOf", "if", "then")}
    return {**rest, "properties": props, "required": sorted(required)}


def near(schema: Any, root: str, junk: bool, depth: int = 0) -> st.SearchStrategy[Any]:
    """Documents shaped by ``schema`` (its required members present), with junk at any level
    when ``junk``: valid ones and ones a single detail away from valid."""
    if not isinstance(schema, dict) or depth > 6:
        return JUNK
    options: list[st.SearchStrategy[Any]] = [JUNK] if junk else []
    if "$ref" in schema:
        target, where = _resolve(schema["$ref"], root)
        options.append(near(target, where, junk, depth + 1))
    for key in ("oneOf", "anyOf"):
        options += [near(s, root, junk, depth + 1) for s in schema.get(key, [])]
    branches = [b for b in [*schema.get("allOf", []), schema] if "if" in b]
    options += [near(_merged(schema, b), root, junk, depth + 1) for b in branches]
    if "const" in schema:
        options.append(st.just(schema["const"]))
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if not branches and ("properties" in schema or "object" in types):
        props = {k: near(v, root, junk, depth + 1) for k, v in schema.get("properties", {}).items()}
        required = {k: props.pop(k, JUNK) for k in schema.get("required", [])}
        extra = schema.get("additionalProperties", True)
        more = st.dictionaries(
            st.sampled_from(["x", "A", "b_c"]),
            near(extra, root, junk, depth + 1),
            max_size=2 if junk or extra is not False else 0,
        )
        whole = st.fixed_dictionaries(required, optional=props)
        options.append(st.tuples(whole, more).map(lambda pair: {**pair[1], **pair[0]}))
    if "items" in schema or "array" in types:
        item = near(schema.get("items", True), root, junk, depth + 1)
        options.append(st.lists(item, max_size=3))
    if "pattern" in schema:
        options.append(st.from_regex(schema["pattern"], fullmatch=True))
    if "string" in types:
        options.append(st.text(min_size=schema.get("minLength", 0), max_size=4))
    if "integer" in types or "number" in types:
        options.append(st.integers(schema.get("minimum", -2), schema.get("maximum", 1 << 20)))
    if "boolean" in types:
        options.append(st.booleans())
    if "null" in types:
        options.append(st.none())
    return st.one_of(options or [JUNK])


def _jsonschema_errors(name: str, doc: Any) -> list[Any]:
    tag = schemas._tag(name, doc)
    return list(schemas._validator(name, tag).iter_errors(doc))


def _nodes(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, child in items:
        found += _nodes(child, (*path, key))
    return found


def _swap(value: Any) -> Any:
    """A value jsonschema tells apart from ``value`` where Python's ``==`` may not."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return bool(value) if value in (0, 1) else float(value)
    return None


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` with one detail changed: a value replaced or swapped, a member dropped or added."""
    path = draw(st.sampled_from(_nodes(doc)))
    if not path:
        return draw(JUNK)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    how = draw(st.sampled_from(["junk", "swap", "drop", "add"]))
    if how == "drop" and isinstance(parent, dict):
        del parent[path[-1]]
    elif how == "add" and isinstance(parent, dict):
        parent[draw(st.sampled_from(["x", "A", "b_c"]))] = draw(JUNK)
    elif how == "swap":
        parent[path[-1]] = _swap(parent[path[-1]])
    else:
        parent[path[-1]] = draw(JUNK)
    return doc


@functools.cache
def shaped(name: str, junk: bool) -> st.SearchStrategy[Any]:
    return near(schemas.load(name), name, junk)


@st.composite
def named_docs(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from(NAMES))
    doc = draw(shaped(name, draw(st.booleans())))
    return name, draw(mutated(doc)) if draw(st.booleans()) else doc


@settings(max_examples=600, derandomize=True, deadline=None)
@given(case=named_docs())
def test_the_fast_check_agrees_with_jsonschema(case: tuple[str, Any]) -> None:
    """Valid by the fast check means valid by jsonschema; and where the check is sure, invalid
    means invalid (so a valid document takes the fast path)."""
    name, doc = case
    check = schemas._check(name, schemas._tag(name, doc))
    assert check is not None
    rejected = bool(_jsonschema_errors(name, doc))
    try:
        verdict = check(doc)
    except schemacheck.Unsure:
        return
    assert verdict == (not rejected), (name, doc)


def test_every_schema_compiles_to_a_fast_check() -> None:
    for name in NAMES:
        assert schemas._check(name) is not None, name


def test_what_the_fast_check_does_not_model_goes_to_jsonschema() -> None:
    load = schemas.load
    assert schemacheck.compile_schema({"format": "date-time"}, "x", load) is None
    assert schemacheck.compile_schema({"patternProperties": {"a": {}}}, "x", load) is None
    check = schemacheck.compile_schema({"type": "integer", "const": 1}, "x", load)
    assert not schemacheck.valid(check, 1.0)  # a float is unsure: jsonschema judges it
    assert schemacheck.valid(check, 1) and not schemacheck.valid(check, True)
    assert schemas.errors("files_changed", {"schema_version": 1.0, "files": []}) == []
