"""A small scripted coding agent for the crank example: it reads its prompt, and each iteration
implements the first operation the feedback says is failing (``add`` when there is no feedback
yet), in ``src/calc.py``. It never sees a scenario: only their categories and opaque IDs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

BODIES = {"add": "a + b", "mul": "a * b", "sub": "a - b"}


def main() -> int:
    prompt = Path(".factory/PROMPT.md").read_text(encoding="utf-8")
    failing = sorted(set(re.findall(r"the failing (\w+) scenarios", prompt)))
    calc = Path("src/calc.py")
    ops = dict(
        re.findall(r"def (\w+)\(a, b\):\n    return (.+)\n", calc.read_text(encoding="utf-8"))
    )
    want = failing[0] if failing else "add"
    ops[want] = BODIES.get(want, "None")
    calc.write_text(
        "\n\n".join(f"def {n}(a, b):\n    return {b}\n" for n, b in sorted(ops.items())),
        encoding="utf-8",
    )
    Path(".factory/SUMMARY.md").write_text(f"implemented {want}\n", encoding="utf-8")
    print(f"agent: implemented {want}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
