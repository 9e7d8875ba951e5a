"""The package's shape, checked on its source: layers import only downwards, no import cycles,
function-level imports only where start-up time needs them, and every subpackage says in one
line what it may import."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tools" / "codex" / "factory"
ROOT = "tools.codex.factory"
# Lowest first: a module may import its own layer and the ones before it. ``errors`` and
# ``version`` are importable by every layer.
LAYERS = ["records", "core", "infra", "ledger", "run", "loop", "audit", "ops", "api", "cli"]
BASE = {f"{ROOT}.errors", f"{ROOT}.version"}
# Function-level imports of the package's own modules, each for start-up time: the CLI loads a
# command's module only when that command runs (`--help` stays fast), and the package loads its
# API only when `Factory` is first used.
LAZY_ALLOWED = {f"{ROOT}.cli.commands", ROOT}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parents[2]).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            found |= {id(n) for n in ast.walk(node)}
    return found


def imports(path: Path, known: set[str]) -> Iterator[tuple[str, bool]]:
    """(imported package module, imported inside a function) for every import that runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    in_function: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(n) for n in ast.walk(fn)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        lazy = id(node) in in_function
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(ROOT):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield (full if full in known else node.module), lazy
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(ROOT):
                    yield alias.name, lazy


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    lazy: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for target, is_lazy in imports(path, set(mods)):
            edges[m].add(target)
            if is_lazy:
                lazy[m].add(target)
    return edges, lazy


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[3] if len(parts) > 3 and parts[3] in LAYERS else None


def test_layers_import_only_downwards() -> None:
    edges, _lazy = graph()
    bad = []
    for m, targets in sorted(edges.items()):
        lm = layer(m)
        for t in sorted(targets):
            lt = layer(t)
            if t in BASE or lm is None or lt is None:
                continue
            if LAYERS.index(lt) > LAYERS.index(lm):
                bad.append(f"{m} imports {t} ({lm} may not import {lt})")
    assert bad == []


def test_no_import_cycles() -> None:
    edges, _lazy = graph()
    known = set(edges)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components (iterative enough here)
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v] & known):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges[v]:
                cycles.append(sorted(comp))

    for v in sorted(known):
        if v not in index:
            visit(v)
    assert cycles == []


def test_function_level_imports_only_for_start_up_time() -> None:
    _edges, lazy = graph()
    found = {m: sorted(t) for m, t in lazy.items() if t and m not in LAZY_ALLOWED}
    assert found == {}


def test_every_subpackage_says_what_it_may_import() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "May import:" in doc, init.parent.name


# Broad handlers (bare ``except``, ``Exception``, ``BaseException``) that do not end by
# re-raising, each where an error must still reach the record: the CLI's last resort, a stage's
# result, and the agent runner's threads (the main thread re-raises what they caught). Each
# keeps the exception it caught. A handler that cleans up and ends with a bare ``raise`` may
# stand anywhere.
BROAD_ALLOWED = {
    f"{ROOT}.cli.commands": 1,
    f"{ROOT}.run.stages": 1,
    f"{ROOT}.run.agents": 2,
}


def _is_broad(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(
        n is None or (isinstance(n, ast.Name) and n.id in ("Exception", "BaseException"))
        for n in names
    )


def test_broad_exception_handlers_only_where_listed_and_never_swallowing() -> None:
    found: dict[str, int] = {}
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ExceptHandler) or not _is_broad(node):
                continue
            last = node.body[-1]
            if isinstance(last, ast.Raise) and last.exc is None:
                continue  # clean up, then the same exception goes on
            found[name] = found.get(name, 0) + 1
            body = ast.Module(body=node.body, type_ignores=[])
            keeps = node.name is not None and any(
                isinstance(n, ast.Name) and n.id == node.name for n in ast.walk(body)
            )
            assert keeps, f"{name}:{node.lineno} swallows the exception"
    assert found == BROAD_ALLOWED
