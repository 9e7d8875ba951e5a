"""Schema validation: a tagged union is judged per tag exactly as the whole schema judges it."""

from __future__ import annotations

from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource

from tools.codex.factory.infra import schemas


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
