"""A scripted coding agent for the crank's tests: it reads its prompt (the feedback of the
iteration before) and changes ``src/calc.py`` as its MODE says, like a coding agent would.

Run by the factory's ``script`` preset as ``{python} crank_agent.py MODE`` in the worker's
worktree. ``src/calc.py`` holds one function per operation (add, mul, sub); the holdout's
scenarios (which the agent never sees) import and call them; their categories name them.

Modes: ``converge`` writes add, then each iteration the first failing category the feedback
names; ``stuck`` changes only a note, never the code; ``oscillate`` writes add on odd
iterations and mul (without add) on even ones; ``regress`` writes add, then mul and sub while
breaking add; ``peek`` writes what it finds of ``scenarios/`` (and every file of its worktree holding the
token ``CRANK_TEST_CANARY`` names) into ``notes/peek.json``, then converges; ``crash``
converges, but in iteration 2 first kills the factory (once: ``CRANK_TEST_CRASH_MARKER``);
``slow`` converges, but in iteration 2 writes its pid to ``CRANK_TEST_SLOW_MARKER`` and
sleeps (for a Ctrl-C); ``moveref`` commits a protected file and moves the crank's branch onto that commit; ``unit``
(a manifest crank's worker ``U<op>``, its ID the second argument) writes ``src/<op>.py``:
``add`` and ``div`` right at once, ``mul`` right once it has feedback, ``sub`` never.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

BODIES = {"add": "a + b", "mul": "a * b", "sub": "a - b"}


def write(ops: dict[str, str]) -> None:
    lines = [f"def {name}(a, b):\n    return {body}\n" for name, body in sorted(ops.items())]
    Path("src").mkdir(exist_ok=True)
    Path("src/calc.py").write_text("\n\n".join(lines) or "# nothing yet\n", encoding="utf-8")


def present() -> dict[str, str]:
    path = Path("src/calc.py")
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return dict(re.findall(r"def (\w+)\(a, b\):\n    return (.+)\n", text))


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def main() -> int:
    mode = sys.argv[1]
    prompt = Path(".factory/PROMPT.md").read_text(encoding="utf-8")
    match = re.search(r"\.i(\d+)", os.environ.get("FACTORY_RUN_ID", ""))
    n = int(match.group(1)) if match else 1
    failing = sorted(set(re.findall(r"Then the failing (\w+) scenarios", prompt)))
    ops = present()
    if mode == "peek":
        found = os.path.exists("scenarios")
        listing = sorted(os.listdir("scenarios")) if found else []
        token = os.environ.get("CRANK_TEST_CANARY", "")
        hits = sorted(
            str(p) for p in Path(".").rglob("*") if p.is_file() and token and token in _text(p)
        )
        Path("notes").mkdir(exist_ok=True)
        doc = {"exists": found, "listing": listing, "canary_hits": hits}
        Path("notes/peek.json").write_text(json.dumps(doc, sort_keys=True))
        mode = "converge"
    marker = os.environ.get("CRANK_TEST_CRASH_MARKER")
    if mode == "crash" and n == 2 and marker and not Path(marker).exists():
        Path(marker).write_text("crashed once\n")
        os.kill(os.getppid(), 9)  # the factory dies mid-iteration, as on a power cut
        return 1
    if mode == "crash":
        mode = "converge"
    slow = os.environ.get("CRANK_TEST_SLOW_MARKER")
    if mode == "slow" and n == 2 and slow:
        Path(slow).write_text(str(os.getpid()))
        time.sleep(60)  # the operator presses Ctrl-C now
    if mode == "slow":
        mode = "converge"
    if mode == "unit":
        # A manifest crank's unit U<op>: add is right at once, mul after feedback, sub never.
        op = sys.argv[2][1:]
        marker = os.environ.get("CRANK_TEST_CRASH_MARKER")
        if op == "sub" and marker and not Path(marker).exists():
            Path(marker).write_text("crashed once\n")
            os.kill(os.getppid(), 9)  # the factory dies in group 2, once
            return 1
        fed = "### Feedback from the previous iteration" in prompt
        body = {
            "add": "a + b",
            "mul": "a * b" if fed else "a + b",
            "sub": "a + b",
            "div": "a // b",
        }[op]
        Path("src").mkdir(exist_ok=True)
        Path(f"src/{op}.py").write_text(f"def {op}(a, b):\n    return {body}\n")
    if mode == "culprit":
        # Worker A builds the calculator; worker B breaks the required check (a file it must
        # not leave) until its feedback says its own change is what broke it.
        if sys.argv[2] == "A":
            mode = "converge"
        else:
            Path("notes").mkdir(exist_ok=True)
            if "caused by B_worker" in prompt:
                Path("notes/broken").unlink(missing_ok=True)
                Path("notes/fixed").write_text("fixed\n")
            else:
                Path("notes/broken").write_text("broken\n")
    if mode == "converge":
        want = "add" if n == 1 else (failing[0] if failing else None)
        if want is not None:
            ops[want] = BODIES[want]
        write(ops)
    elif mode == "moveref":
        # Worktrees share the repository's refs: forge a commit of a protected path and move
        # the crank's branch onto it.
        write({"add": BODIES["add"]})
        Path("tools/codex/factory").mkdir(parents=True, exist_ok=True)
        Path("tools/codex/factory/evil.py").write_text("print('owned')\n")
        ident = ["-c", "user.name=agent", "-c", "user.email=agent@invalid"]
        subprocess.run(["git", *ident, "add", "-A"], check=True)
        subprocess.run(["git", *ident, "commit", "-qm", "forged"], check=True)
        prefix = "factory/crank/" + os.environ["FACTORY_CRANK_ID"]
        subprocess.run(["git", "update-ref", f"refs/heads/{prefix}", "HEAD"], check=True)
    elif mode == "stuck":
        Path("notes").mkdir(exist_ok=True)
        Path("notes/attempt.txt").write_text(f"attempt {n}\n")
    elif mode == "oscillate":
        write({"add": BODIES["add"]} if n % 2 else {"mul": BODIES["mul"]})
    elif mode == "regress":
        write({"add": BODIES["add"]} if n == 1 else {**BODIES, "add": "a - b"})
    Path(".factory/SUMMARY.md").write_text(f"{mode}: iteration {n}\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
