"""A scripted headless agent for the tests: does what a JSON spec says for its worker.

Run by the factory's ``script`` preset as ``{python} scripted_agent.py SPEC {worker_id}`` in the
worker's worktree. SPEC maps worker IDs to steps, done in this order:

``pids``: folder to write ``<W>.pid`` (this process) and ``<W>.child.pid`` (a grandchild
that sleeps) into; ``barrier``: {"dir", "n"}: create ``<W>.ready`` there and wait (60 s at most)
until n workers did; ``read_holdout``: print what ``scenarios/`` holds; ``stdin``: print the
first line of stdin; ``write`` {path: text | {"hex": ...}}, ``delete`` [paths], ``rename``
{old: new}, ``chmod_x`` [paths]; ``commit``: git add -A + commit; ``notes`` {name: text} into
``.factory/``; ``sleep``: seconds (skipped when the file ``unless`` names exists); ``exit``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")).get(sys.argv[2], {})
    wid = sys.argv[2]
    if "pids" in spec:
        folder = Path(spec["pids"])
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        (folder / f"{wid}.child.pid").write_text(str(child.pid))
        (folder / f"{wid}.pid").write_text(str(os.getpid()))
    if "barrier" in spec:
        folder, n = Path(spec["barrier"]["dir"]), int(spec["barrier"]["n"])
        (folder / f"{wid}.ready").write_text("ready")
        deadline = time.monotonic() + 60
        while len(list(folder.glob("*.ready"))) < n:
            if time.monotonic() > deadline:
                print("barrier: gave up waiting", flush=True)
                return 9
            time.sleep(0.02)
    if spec.get("read_holdout"):
        present = os.path.exists("scenarios")
        listing = sorted(os.listdir("scenarios")) if present else []
        print(json.dumps({"scenarios_exists": present, "listing": listing}), flush=True)
    if spec.get("stdin"):
        print("stdin: " + sys.stdin.readline().rstrip("\n"), flush=True)
    for rel, content in spec.get("write", {}).items():
        path = Path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            path.write_bytes(bytes.fromhex(content["hex"]))
        else:
            path.write_bytes(content.encode("utf-8"))
    for rel in spec.get("delete", []):
        os.remove(rel)
    for old, new in spec.get("rename", {}).items():
        Path(new).parent.mkdir(parents=True, exist_ok=True)
        os.rename(old, new)
    for rel in spec.get("chmod_x", []):
        os.chmod(rel, 0o755)
    for args in spec.get("git", []):
        subprocess.run(["git", *args], check=True)
    if spec.get("commit"):
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run(["git", "commit", "-q", "-m", f"worker {wid}"], check=True)
    for name, text in spec.get("notes", {}).items():
        Path(".factory", name).write_text(text, encoding="utf-8")
    if "sleep" in spec and not (spec.get("unless") and os.path.exists(spec["unless"])):
        time.sleep(float(spec["sleep"]))
    return int(spec.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main())
