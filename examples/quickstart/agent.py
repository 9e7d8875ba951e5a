"""The quick start's scripted agent: reads its task from .factory/PROMPT.md and does it.

A real run would use Codex, Claude Code or Aider (presets `codex`, `claude`, `aider`); this
stand-in makes the demo run anywhere, offline, in a second. Task lines it understands:

    create: PATH: TEXT      write PATH with TEXT (``\\n`` is a newline)
    append: PATH: TEXT      add TEXT as a new line at the end of PATH

It also leaves a summary in .factory/SUMMARY.md, as the prompt asks every worker to.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

LINE = re.compile(r"^(create|append): ([^:]+): (.*)$")


def main() -> int:
    worker = sys.argv[1]
    prompt = Path(".factory/PROMPT.md").read_text(encoding="utf-8")
    task = prompt.split("## Your task", 1)[1].split("\n## ", 1)[0]
    done = []
    time.sleep(0.5)  # a little "thinking", so the four workers visibly overlap in time
    for line in task.splitlines():
        m = LINE.match(line.strip())
        if not m:
            continue
        verb, rel, text = m.group(1), m.group(2).strip(), m.group(3).replace("\\n", "\n")
        path = Path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        if verb == "create":
            path.write_text(text + "\n", encoding="utf-8")
        else:
            old = path.read_text(encoding="utf-8") if path.exists() else ""
            path.write_text(old + text + "\n", encoding="utf-8")
        done.append(f"- {verb} `{rel}`")
    Path(".factory/SUMMARY.md").write_text(
        f"# Worker {worker}\n\n" + "\n".join(done) + "\n", encoding="utf-8"
    )
    print(f"worker {worker}: {len(done)} step(s) done")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
