"""The package's shape, checked on its source: layers import only downwards, no import cycles,
function-level imports only where start-up time needs them, and every subpackage says in one
line what it may import."""

from __future__ import annotations

import ast
import importlib.util
import re
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


def _may_import(doc: str) -> set[str]:
    """The names (in double backquotes) of a docstring's "May import:" sentence."""
    sentence = re.split(r"\.(?:\s|$)", doc.split("May import:", 1)[1], maxsplit=1)[0]
    return set(re.findall(r"``([a-z_]+)``", sentence))


def test_every_subpackage_says_what_it_may_import() -> None:
    """Each subpackage's "May import:" line names exactly ``errors`` and the layers below it
    (LAYERS, those that exist): the docstrings and this test say the same thing."""
    existing = {p.parent.name for p in PACKAGE.glob("*/__init__.py")} | {
        p.stem for p in PACKAGE.glob("*.py")
    }
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        name = init.parent.name
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "May import:" in doc, name
        below = {lay for lay in LAYERS[: LAYERS.index(name)] if lay in existing}
        assert _may_import(doc) == {"errors"} | below, name


# core is pure (decisions replay recomputes): no I/O, no clock, no processes. What it may import
# from the standard library, and the path methods that would touch the disk.
CORE_PURE_IMPORTS = {
    "__future__",
    "ast",  # Python source read as data (Gate 0), never run
    "base64",
    "bisect",  # searching sorted lists in memory (Gate 0's line ranges)
    "collections",
    "collections.abc",
    "dataclasses",
    "datetime",  # dates as values (formatting, parsing); reading the time is clock's alone
    "decimal",  # exact thresholds
    "enum",
    "functools",
    "hashlib",
    "html",  # escaping text for the report page
    "itertools",
    "pathlib",  # path arithmetic only (see _DISK_METHODS)
    "posixpath",
    "re",
    "typing",
    "unicodedata",
    "xml.parsers",  # expat over bytes in memory; the caller's handlers refuse every entity
    "zlib",
}
_DISK_METHODS = {
    "absolute",
    "chmod",
    "cwd",
    "exists",
    "expanduser",
    "glob",
    "hardlink_to",
    "home",
    "is_dir",
    "is_file",
    "is_symlink",
    "iterdir",
    "lstat",
    "mkdir",
    "read_bytes",
    "read_text",
    "readlink",
    "rename",
    "resolve",
    "rglob",
    "rmdir",
    "samefile",
    "stat",
    "symlink_to",
    "touch",
    "unlink",
    "write_bytes",
    "write_text",
}
_IO_BUILTINS = {"open", "print", "input", "exec", "eval", "__import__"}


def impurities(source: str) -> list[str]:
    """What in ``source`` reaches outside memory: an import off the pure list (the package's
    own modules aside: the layer test judges those), an I/O builtin, a method that touches the
    disk, a clock read."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mods = [] if node.level else [node.module or ""]
        else:
            mods = []
        for mod in mods:
            if mod not in CORE_PURE_IMPORTS and not mod.startswith(ROOT):
                found.append(f"{line}: import {mod}")
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in _IO_BUILTINS:
                found.append(f"{line}: {node.func.id}()")
            if isinstance(node.func, ast.Attribute) and node.func.attr in _DISK_METHODS:
                found.append(f"{line}: .{node.func.attr}()")
            if isinstance(node.func, ast.Attribute) and node.func.attr in (
                "now",
                "utcnow",
                "today",
            ):
                found.append(f"{line}: .{node.func.attr}()")
    return found


def test_core_does_no_io() -> None:
    found = {
        name: bad
        for name, path in modules().items()
        if layer(name) == "core" and (bad := impurities(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_purity_check_sees_io() -> None:
    source = (
        "import os\nimport subprocess as sp\nfrom time import monotonic\nfrom pathlib import Path\n"
        "def f(p: Path) -> bytes:\n    open('x')\n    return p.read_bytes()\n"
        "def g(d: object) -> None:\n    d.now()\n"
    )
    assert impurities(source) == [
        "1: import os",
        "2: import subprocess",
        "3: import time",
        "6: open()",
        "7: .read_bytes()",
        "9: .now()",
    ]


# Broad handlers (bare ``except``, ``Exception``, ``BaseException``) that do not end by
# re-raising, each where an error must still reach the record: the CLI's last resort, a stage's
# result, and the agent runner's threads (the main thread re-raises what they caught). Each
# keeps the exception it caught. A handler that cleans up and ends with a bare ``raise`` may
# stand anywhere. ``contextlib.suppress(Exception)`` swallows by construction: nowhere.
BROAD_ALLOWED = {
    f"{ROOT}.cli.commands": 1,
    f"{ROOT}.run.stages": 1,
    f"{ROOT}.run.agents": 2,
}
_BROAD = ("Exception", "BaseException")


def _is_broad(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(n is None or (isinstance(n, ast.Name) and n.id in _BROAD) for n in names)


def broad_handlers(source: str, where: str) -> tuple[int, list[str]]:
    """(broad handlers that do not re-raise, what swallows an exception) in ``source``."""
    count, swallowed = 0, []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _dotted_name(node.func).endswith("suppress"):
            names = [
                a for arg in node.args for a in (arg.elts if isinstance(arg, ast.Tuple) else [arg])
            ]
            if any(_dotted_name(a).rpartition(".")[2] in _BROAD for a in names):
                swallowed.append(
                    f"{where}:{node.lineno} suppress({', '.join(map(_dotted_name, names))})"
                )
        if not isinstance(node, ast.ExceptHandler) or not _is_broad(node):
            continue
        last = node.body[-1]
        if isinstance(last, ast.Raise) and last.exc is None:
            continue  # clean up, then the same exception goes on
        count += 1
        body = ast.Module(body=node.body, type_ignores=[])
        keeps = node.name is not None and any(
            isinstance(n, ast.Name) and n.id == node.name for n in ast.walk(body)
        )
        if not keeps:
            swallowed.append(f"{where}:{node.lineno} swallows the exception")
    return count, swallowed


def _dotted_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted_name(node.value)}.{node.attr}"
    return ""


def test_broad_exception_handlers_only_where_listed_and_never_swallowing() -> None:
    found: dict[str, int] = {}
    swallowed: list[str] = []
    for name, path in modules().items():
        count, bad = broad_handlers(path.read_text(encoding="utf-8"), name)
        if count:
            found[name] = count
        swallowed += bad
    assert swallowed == []
    assert found == BROAD_ALLOWED


def test_the_broad_handler_check_sees_suppress() -> None:
    source = (
        "import contextlib\nfrom contextlib import suppress\n"
        "with contextlib.suppress(Exception):\n    pass\n"
        "with suppress(OSError, BaseException):\n    pass\n"
        "with suppress((ValueError, builtins.Exception)):\n    pass\n"
        "with suppress(OSError):\n    pass\n"
    )
    assert broad_handlers(source, "m") == (
        0,
        [
            "m:3 suppress(Exception)",
            "m:5 suppress(OSError, BaseException)",
            "m:7 suppress(ValueError, builtins.Exception)",
        ],
    )


# Defined in the package, used only by tests: public API, kept on purpose.
USED_BY_TESTS_ONLY = {
    "api.py Factory.import_patch": "the Python API (README)",
    "api.py Factory.verify_ledger": "the Python API",
    "audit/fold.py registry_problems": "pure: the fold's handlers against the ledger schema",
    "core/gitbinary.py encode_lines": "pure: the inverse of decode_line (tests build patches)",
    "core/gitbinary.py decode_lines": "pure: a whole block of data lines",
    "infra/gitops.py ATTR_SOURCE_VERSION": "the git release GIT_ATTR_SOURCE came with (the probe's test)",
    "core/symptoms.py CLASSES": "pure: the symptom classes feedback counts",
    "core/manifest.py unit_of": "pure: the unit a worker runs (the crank wires it next)",
}


def _definitions(tree: ast.Module) -> Iterator[tuple[str, str, int]]:
    """(name, qualified name, line) of the module's functions, methods and constants; those
    registered by a decorator (CLI commands) are used by it."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.decorator_list:
            yield node.name, node.name, node.lineno
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and _plain(item):
                    yield item.name, f"{node.name}.{item.name}", item.lineno
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for n in ast.walk(target):
                    if isinstance(n, ast.Name):
                        yield n.id, n.id, node.lineno


def _plain(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Not registered by a decorator (properties and static or class methods are plain)."""
    kinds = ("property", "staticmethod", "classmethod")
    return all(isinstance(d, ast.Name) and d.id in kinds for d in fn.decorator_list)


def _uses(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """Every name a module mentions: loaded names, attributes, imports, identifier strings
    (``getattr``, ``__all__``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            yield node.id, node.lineno
        elif isinstance(node, ast.Attribute):
            yield node.attr, node.lineno
        elif isinstance(node, ast.alias):
            yield node.name.rpartition(".")[2], node.lineno
        elif isinstance(node, ast.Constant) and str(node.value).isidentifier():
            yield str(node.value), node.lineno


def unused() -> dict[str, set[str]]:
    """'module name' -> where it is used, for what the package defines and uses nowhere but in
    tests (an empty set: nowhere at all). Names are matched, not objects: a conservative list."""
    root = PACKAGE.parents[2]
    files = [p for d in ("tools", "tests", "bench", "examples") for p in (root / d).rglob("*.py")]
    users: dict[str, set[str]] = {}
    defined: list[tuple[str, str]] = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(root).as_posix()
        mine = path.is_relative_to(PACKAGE)
        own = {(name, line) for name, _q, line in _definitions(tree)} if mine else set()
        for name, line in _uses(tree):
            if (name, line) not in own:
                users.setdefault(name, set()).add(rel)
        if mine:
            module = path.relative_to(PACKAGE).as_posix()
            defined += [(f"{module} {q}", n) for n, q, _ in _definitions(tree) if n[:2] != "__"]
    return {
        key: users.get(name, set())
        for key, name in defined
        if not any(u.startswith("tools/") for u in users.get(name, set()))
    }


def test_nothing_the_package_defines_is_unused() -> None:
    found = unused()
    assert {k: sorted(v) for k, v in found.items() if not v} == {}  # used nowhere: remove it
    assert set(found) == set(USED_BY_TESTS_ONLY)


def _views_named(package: Path = PACKAGE) -> dict[str, str]:
    """Each view a library module's ``Outcome(..., view="...")`` names -> where."""
    named = {}
    for name, path in modules(package).items():
        if layer(name) == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _dotted_name(node.func) == "Outcome":
                for kw in node.keywords:
                    if kw.arg == "view" and isinstance(kw.value, ast.Constant):
                        named[str(kw.value.value)] = f"{name}:{node.lineno}"
    return named


def test_every_view_the_library_names_is_worded_by_the_cli() -> None:
    """The library hands back data and a view; cli/render.py words each view, and no other."""
    from tools.codex.factory.cli import render

    named = _views_named()
    assert {v: where for v, where in named.items() if v not in render.VIEWS} == {}
    assert sorted(set(render.VIEWS) - set(named)) == []
