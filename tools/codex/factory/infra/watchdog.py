"""The POSIX watchdog: stops the factory's child process groups when the factory dies.

:mod:`proc` runs this file as ``python -I -S watchdog.py SIGNUM`` in its own session, with stdin
the read end of a pipe whose only write end the factory holds. The factory writes ``+PGID`` when
it starts a child group and ``-PGID`` once it has stopped it. End of file means the factory is
gone, however it ended (SIGKILL included, which no handler in the factory can see): every group
still registered gets SIGNUM (SIGKILL) and the watchdog exits, so it never outlives its factory.

It imports nothing but ``os`` (already loaded at interpreter start; even ``signal`` would cost
more than the rest, hence the number in argv): its start competes with the first check for CPU.
Its own session keeps a terminal's Ctrl-C and hang-up, meant for the factory, away from it.
"""

import os
import sys


def serve(fd: int) -> set[int]:
    """Follow the registrations on ``fd`` until end of file; the groups still registered."""
    groups: set[int] = set()
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            try:
                pgid = int(line[1:])
            except ValueError:
                continue
            # 0, 1 and negatives mean "my group", init or "everything" to killpg: never ours.
            if pgid <= 1:
                continue
            if line.startswith(b"+"):
                groups.add(pgid)
            elif line.startswith(b"-"):
                groups.discard(pgid)
    return groups


def main(argv: list[str]) -> int:
    signum = int(argv[1])
    own = os.getpgrp()
    for pgid in serve(0):
        if pgid == own:
            continue
        try:
            os.killpg(pgid, signum)
        except OSError:  # already gone
            continue
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
