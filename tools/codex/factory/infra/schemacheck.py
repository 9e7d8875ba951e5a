"""A fast yes/no check of a document against the factory's JSON Schemas, before jsonschema.

``schemas.errors`` asks it first: a document it finds valid needs no jsonschema at all (its
import and validator set-up cost more than a small validate + integrate's own work); any other
answer goes to jsonschema, which judges again and words the errors. So it must never call valid
what jsonschema calls invalid: each keyword follows jsonschema's Draft 2020-12 rules exactly, a
keyword it does not model makes the whole schema unsupported (always jsonschema), and a value
whose rules differ subtly (a float: ``1.0`` is an integer and equals ``1``) is "unsure".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]
Load = Callable[[str], dict[str, Any]]


class Unsure(Exception):
    """A value this checker does not model (a float): jsonschema decides."""


class Unsupported(Exception):
    """A schema keyword or shape this checker does not model: jsonschema decides, always."""


_ANNOTATIONS = frozenset(
    {"$schema", "$defs", "title", "description", "default", "examples", "$comment"}
)
_TYPE_NAMES = frozenset({"string", "object", "array", "boolean", "null", "integer", "number"})
_BOUNDS: dict[str, Callable[[int, int], bool]] = {
    "minimum": lambda v, b: v >= b,
    "maximum": lambda v, b: v <= b,
    "exclusiveMinimum": lambda v, b: v > b,
    "exclusiveMaximum": lambda v, b: v < b,
}
_LENGTHS: dict[str, tuple[type[str] | type[list[Any]], Callable[[int, int], bool]]] = {
    "minLength": (str, lambda n, b: n >= b),
    "maxLength": (str, lambda n, b: n <= b),
    "minItems": (list, lambda n, b: n >= b),
    "maxItems": (list, lambda n, b: n <= b),
}


def _is_number(value: Any) -> bool:
    if isinstance(value, float):
        raise Unsure
    return isinstance(value, int) and not isinstance(value, bool)


def _is_type(value: Any, name: str) -> bool:
    """jsonschema's Draft 2020-12 type checker (a bool is no number; a float is unsure)."""
    if name in ("integer", "number"):
        return _is_number(value)
    if name == "string":
        return isinstance(value, str)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "boolean":
        return isinstance(value, bool)
    return value is None


def _literal(value: Any) -> Any:
    """A ``const``/``enum`` value this checker can compare (a string, integer, bool or null)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value
    raise Unsupported(f"literal {value!r}")


def _equal(value: Any, literal: Any) -> bool:
    """jsonschema's equality against a scalar literal: ``True`` is not ``1``."""
    if isinstance(value, float):
        raise Unsure
    if isinstance(literal, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(literal, bool) and value == literal
    if literal is None:
        return value is None
    if isinstance(literal, str):
        return isinstance(value, str) and value == literal
    return isinstance(value, int) and value == literal


def _unique(values: list[Any]) -> bool:
    if not all(isinstance(v, str) for v in values):
        raise Unsure
    return len(set(values)) == len(values)


class Compiler:
    """Compiles the schemas of one folder (``load`` by name) into checks; ``$ref`` targets are
    compiled once each, on first use."""

    def __init__(self, load: Load) -> None:
        self._load = load
        self._refs: dict[tuple[str, str], Check] = {}

    def compile(self, schema: Any, root: str, top: bool = True) -> Check:
        if schema is True:
            return lambda value: True
        if schema is False:
            return lambda value: False
        if not isinstance(schema, dict):
            raise Unsupported(f"schema {schema!r}")
        if "$id" in schema and not top:  # a nested base URI would change how refs resolve
            raise Unsupported("$id")
        checks = [
            self._keyword(key, arg, schema, root)
            for key, arg in schema.items()
            if key not in _ANNOTATIONS and key not in ("$id", "then", "else")
        ]
        if len(checks) == 1:
            return checks[0]
        return lambda value: all(check(value) for check in checks)

    def _sub(self, schema: Any, root: str) -> Check:
        return self.compile(schema, root, top=False)

    def _keyword(self, key: str, arg: Any, schema: dict[str, Any], root: str) -> Check:
        if key == "type":
            return self._type(arg)
        if key in ("properties", "additionalProperties", "propertyNames", "required"):
            return self._object(key, arg, schema, root)
        if key in ("items", "uniqueItems"):
            return self._array(key, arg, schema, root)
        if key in ("const", "enum"):
            allowed = [_literal(v) for v in ([arg] if key == "const" else list(arg))]
            return lambda value: any(_equal(value, v) for v in allowed)
        if key in _BOUNDS:
            return self._bound(_BOUNDS[key], arg)
        if key in _LENGTHS:
            return self._length(*_LENGTHS[key], arg)
        if key == "pattern":
            rx = re.compile(arg)
            return lambda value: not isinstance(value, str) or rx.search(value) is not None
        if key in ("allOf", "oneOf", "anyOf", "if", "not", "$ref"):
            return self._logic(key, arg, schema, root)
        raise Unsupported(key)

    @staticmethod
    def _type(arg: Any) -> Check:
        names = [arg] if isinstance(arg, str) else arg
        if not isinstance(names, list) or not names or not set(names) <= _TYPE_NAMES:
            raise Unsupported(f"type {arg!r}")
        return lambda value: any(_is_type(value, n) for n in names)

    @staticmethod
    def _bound(holds: Callable[[int, int], bool], arg: Any) -> Check:
        if isinstance(arg, bool) or not isinstance(arg, int):
            raise Unsupported(f"bound {arg!r}")
        return lambda value: not _is_number(value) or holds(value, arg)

    @staticmethod
    def _length(
        kind: type[str] | type[list[Any]], holds: Callable[[int, int], bool], arg: Any
    ) -> Check:
        if isinstance(arg, bool) or not isinstance(arg, int):
            raise Unsupported(f"length {arg!r}")
        return lambda value: not isinstance(value, kind) or holds(len(value), arg)

    def _object(self, key: str, arg: Any, schema: dict[str, Any], root: str) -> Check:
        if key == "required":
            names = list(arg)
            return lambda value: not isinstance(value, dict) or all(n in value for n in names)
        if key == "properties":
            subs = {name: self._sub(sub, root) for name, sub in arg.items()}
            return lambda value: (
                not isinstance(value, dict)
                or all(check(value[name]) for name, check in subs.items() if name in value)
            )
        sub = self._sub(arg, root)
        if key == "propertyNames":
            return lambda value: not isinstance(value, dict) or all(sub(k) for k in value)
        if "patternProperties" in schema:
            raise Unsupported("patternProperties")
        known = frozenset(schema.get("properties", {}))
        return lambda value: (
            not isinstance(value, dict) or all(sub(v) for k, v in value.items() if k not in known)
        )

    def _array(self, key: str, arg: Any, schema: dict[str, Any], root: str) -> Check:
        if "prefixItems" in schema:
            raise Unsupported("prefixItems")
        if key == "uniqueItems":
            if arg is not True:
                return lambda value: True
            return lambda value: not isinstance(value, list) or _unique(value)
        sub = self._sub(arg, root)
        return lambda value: not isinstance(value, list) or all(sub(v) for v in value)

    def _logic(self, key: str, arg: Any, schema: dict[str, Any], root: str) -> Check:
        if key == "$ref":
            return self._ref(arg, root)
        if key == "not":
            sub = self._sub(arg, root)
            return lambda value: not sub(value)
        if key == "if":
            cond = self._sub(arg, root)
            then = self._sub(schema.get("then", True), root)
            other = self._sub(schema.get("else", True), root)
            return lambda value: then(value) if cond(value) else other(value)
        subs = [self._sub(s, root) for s in arg]
        if key == "allOf":
            return lambda value: all(s(value) for s in subs)
        if key == "anyOf":
            return lambda value: any(s(value) for s in subs)
        return lambda value: sum(1 for s in subs if s(value)) == 1  # oneOf: all are judged

    def _ref(self, ref: Any, root: str) -> Check:
        """A ``$ref`` to ``#/$defs/x`` of this schema or to ``<name>.schema.json[#/...]`` beside
        it, compiled on first use (so a recursive schema compiles)."""
        if not isinstance(ref, str) or "~" in ref or "%" in ref:
            raise Unsupported(f"$ref {ref!r}")
        file, _, pointer = ref.partition("#")
        if file:
            if "/" in file or not file.endswith(".schema.json"):
                raise Unsupported(f"$ref {ref!r}")
            root = file.removesuffix(".schema.json")
        target: Any = self._load(root)
        for part in [p for p in pointer.split("/") if p] if pointer else []:
            if not isinstance(target, dict) or part not in target:
                raise Unsupported(f"$ref {ref!r}")
            target = target[part]
        slot = (root, pointer)
        if slot not in self._refs:
            self._refs[slot] = lambda value: False  # placeholder while compiling
            self._refs[slot] = self.compile(target, root, top=not pointer)
        refs = self._refs
        return lambda value: refs[slot](value)


def compile_schema(schema: dict[str, Any], root: str, load: Load) -> Check | None:
    """A check for ``schema`` (of the file named ``root``), or None when it uses anything this
    checker does not model."""
    try:
        return Compiler(load).compile(schema, root)
    except (Unsupported, re.error, TypeError, AttributeError):
        return None


def valid(check: Check | None, doc: Any) -> bool:
    """True only when ``doc`` is certainly valid; False means "ask jsonschema"."""
    if check is None:
        return False
    try:
        return check(doc)
    except Unsure:
        return False
