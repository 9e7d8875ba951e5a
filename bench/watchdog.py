"""What the watchdog adds to the first check a factory process runs (POSIX).

Each round is a fresh process that runs one short check (``python -c pass``) to completion:
once through ``proc.start`` (which first starts the watchdog: one fork and exec, whose
interpreter then starts alongside the check and competes with it for CPU), once through a bare
``Popen`` in its own session (what ``proc.start`` did before), alternating. Reported: the
medians of both, their difference, the watchdog's own ``Popen`` (what the factory waits for)
and the CPU the watchdog uses in its whole life (which only delays the check when no core is
free). Target: <= 5 ms added.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import _common

ROUND = """
import json, os, resource, subprocess, sys, time
from tools.codex.factory.infra import proc
env = proc.base_env()
null = open(os.devnull, "wb")
argv = proc.resolve_argv([sys.executable, "-c", "pass"], env)
mode = sys.argv[1]
t0 = time.perf_counter()
if mode == "watchdog":
    proc._WATCHDOG.ensure()
    t1 = time.perf_counter()
    os.close(proc._WATCHDOG._fd)  # end of file: it exits; then count the CPU it used
    proc._WATCHDOG._proc.wait()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({mode: t1 - t0, "cpu": ru.ru_utime + ru.ru_stime}))
    raise SystemExit(0)
elif mode == "factory":
    p = proc.start(argv, ".", env, null, null)
    p.wait()
    proc.kill_group(p)
else:
    p = subprocess.Popen(
        argv, cwd=".", env=env, stdin=subprocess.DEVNULL, stdout=null, stderr=null,
        start_new_session=True,
    )
    p.wait()
print(json.dumps({mode: time.perf_counter() - t0}))
"""


def main() -> int:
    if sys.platform == "win32":
        print("POSIX only (Windows uses job objects, no watchdog process)")
        return 0
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=31)
    args = ap.parse_args()
    env = dict(_common.git_env(), PYTHONPATH=str(_common.ROOT))
    figures: dict[str, list[float]] = {"factory": [], "bare": [], "watchdog": [], "cpu": []}
    for _ in range(args.rounds):
        for mode in ("factory", "bare", "watchdog"):
            res = subprocess.run(
                [sys.executable, "-c", ROUND, mode],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            for key, value in json.loads(res.stdout).items():
                figures[key].append(value)
    factory, bare, watchdog, cpu = (_common.median(figures[k]) * 1000 for k in figures)
    print(_common.env_line())
    print(f"first check through proc.start (watchdog included): {factory:.2f} ms")
    print(f"first check through a bare Popen: {bare:.2f} ms (medians of {args.rounds})")
    print(f"the watchdog's own Popen (the factory waits for it): {watchdog:.2f} ms")
    print(f"CPU the watchdog uses in all (alongside the check): {cpu:.2f} ms")
    print(_common.verdict("added to the first check (ms)", factory - bare, 5, False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
