"""The one ``{placeholder}`` grammar of command lines (checks and agents): ``{name}`` is a known
placeholder, ``{{`` and ``}}`` are literal braces, any other brace is an error."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from tools.codex.factory.errors import UsageError

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def check(argv: Sequence[str], known: Sequence[str], source: str, field: str = "argv") -> None:
    """Raise UsageError naming ``source``'s argv index unless every brace is well-formed and
    every placeholder is one of ``known``. ``field=""``: one value, named by ``source`` alone
    (a check's ``env`` entry)."""
    shown = ", ".join("{" + p + "}" for p in known)
    for i, arg in enumerate(argv):
        where = f"{source}.{field}[{i}]" if field else source
        for m in _TOKEN.finditer(arg):
            tok, name = m.group(0), m.group(1)
            if tok in ("{", "}"):
                raise UsageError(
                    f"{where}: unbalanced {tok!r} in {arg!r} at column {m.start() + 1} "
                    f"(placeholders are {shown}; write {{{{ or }}}} for a literal brace)"
                )
            if name is not None and name not in known:
                raise UsageError(f"{where}: unknown placeholder {{{name}}} (known: {shown})")


def expand(argv: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """``argv`` with every known placeholder replaced (an unknown one, which :func:`check`
    refuses up front, is left as written)."""

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok == "{{":
            return "{"
        if tok == "}}":
            return "}"
        return values.get(m.group(1), tok)

    return [_PLACEHOLDER.sub(sub, a) for a in argv]
