"""The package's shape, checked on its source: layers import only downwards, no import cycles,
function-level imports only where start-up time needs them, and every subpackage says in one
line what it may import."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
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


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Module name -> file for every module of ``package`` (a copy of it in a test too)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parents[2]).with_suffix("").parts)
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


def absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The module ``from ... import`` names, relative forms (``from . import x``, ``from ..run
    import handle``) resolved against ``module`` as Python resolves them."""
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - (node.level - 1)])
    return f"{base}.{node.module}" if node.module else base


def imports_in(
    source: str, module: str, is_package: bool, known: set[str]
) -> Iterator[tuple[str, bool]]:
    """(imported package module, imported inside a function) for every import in ``source``
    (the text of ``module``) that runs."""
    tree = ast.parse(source)
    skip = _type_checking_nodes(tree)
    in_function: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(n) for n in ast.walk(fn)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        lazy = id(node) in in_function
        if isinstance(node, ast.ImportFrom):
            target = absolute(module, is_package, node)
            if target != ROOT and not target.startswith(ROOT + "."):
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                yield (full if full in known else target), lazy
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(ROOT):
                    yield alias.name, lazy


def imports(path: Path, module: str, known: set[str]) -> Iterator[tuple[str, bool]]:
    source = path.read_text(encoding="utf-8")
    return imports_in(source, module, path.name == "__init__.py", known)


def graph(package: Path = PACKAGE) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    mods = modules(package)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    lazy: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for target, is_lazy in imports(path, m, set(mods)):
            edges[m].add(target)
            if is_lazy:
                lazy[m].add(target)
    return edges, lazy


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[3] if len(parts) > 3 and parts[3] in LAYERS else None


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, targets in sorted(edges.items()):
        lm = layer(m)
        for t in sorted(targets):
            lt = layer(t)
            if t in BASE or lm is None or lt is None:
                continue
            if LAYERS.index(lt) > LAYERS.index(lm):
                bad.append(f"{m} imports {t} ({lm} may not import {lt})")
    return bad


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles (strongly connected components of more than one module, or a module
    importing itself), by Tarjan's algorithm."""
    known = set(edges)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # recursive: the package's import depth is small
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
                found.append(sorted(comp))

    for v in sorted(known):
        if v not in index:
            visit(v)
    return found


def test_layers_import_only_downwards() -> None:
    edges, _lazy = graph()
    assert upward_imports(edges) == []


def test_no_import_cycles() -> None:
    edges, _lazy = graph()
    assert cycles(edges) == []


def test_relative_imports_are_resolved() -> None:
    """``from . import x`` and ``from ..run import handle`` count like their absolute forms."""
    known = {f"{ROOT}.core", f"{ROOT}.core.ids", f"{ROOT}.core.paths", f"{ROOT}.run.handle"}
    source = "from . import paths\nfrom ..run import handle\nfrom .. import core\n"
    found = {t for t, _ in imports_in(source, f"{ROOT}.core.ids", False, known)}
    assert found == {f"{ROOT}.core.paths", f"{ROOT}.run.handle", f"{ROOT}.core"}
    found = {t for t, _ in imports_in("from . import ids\n", f"{ROOT}.core", True, known)}
    assert found == {f"{ROOT}.core.ids"}
    found = {t for t, _ in imports_in("from .paths import X\n", f"{ROOT}.core.ids", False, known)}
    assert found == {f"{ROOT}.core.paths"}


def test_an_upward_import_or_a_cycle_through_relative_imports_is_caught(tmp_path: Path) -> None:
    """In a copy of the package: core importing run, and a cycle, both written relatively."""
    copy = tmp_path / "tools" / "codex" / "factory"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "core" / "upward.py").write_bytes(b"from ..run import handle\n")
    (copy / "run" / "ring_a.py").write_bytes(b"from . import ring_b\n")
    (copy / "run" / "ring_b.py").write_bytes(b"from .ring_a import x\n")
    edges, _lazy = graph(copy)
    assert upward_imports(edges) == [
        f"{ROOT}.core.upward imports {ROOT}.run.handle (core may not import run)"
    ]
    assert cycles(edges) == [[f"{ROOT}.run.ring_a", f"{ROOT}.run.ring_b"]]
    if importlib.util.find_spec("ruff") is None:  # the lint extra is not installed here
        return
    # ruff's TID252 refuses the relative form itself (pyproject.toml: ban-relative-imports).
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "TID252", "--no-cache", str(copy)],
        cwd=PACKAGE.parents[2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ruff.returncode == 1 and ruff.stdout.count("TID252") == 3, ruff.stdout


def test_ruff_bans_relative_imports() -> None:
    """The package uses absolute imports; ruff keeps it so (with the lint extra installed)."""
    text = (PACKAGE.parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    select = next(line for line in text.splitlines() if line.startswith("select = "))
    assert '"TID252"' in select
    assert 'ban-relative-imports = "all"' in text.split("[tool.ruff.lint.flake8-tidy-imports]")[1]


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
