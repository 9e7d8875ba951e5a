"""The only source of time. A pinned clock (``--now``/``FACTORY_NOW``) makes runs reproducible.

Two kinds of time leave this module: *recorded* time (:class:`Clock`: timestamps, and durations
that reach logs or artifacts, which stand still when pinned so pinned runs are byte-identical)
and *real* time (:func:`real_monotonic`, :func:`sleep`: time limits and polling, never pinned,
never written anywhere).
"""

from __future__ import annotations

import datetime as _dt
import os
import time

from tools.codex.factory.core.timefmt import (
    MAX_YEAR,
    MIN_YEAR,
    UTC,
    compact,
    format_ts,
    parse_instant,
)

# The formats are pure (core.timefmt); the clock hands them on with the time it reads.
__all__ = [
    "MAX_YEAR",
    "MIN_YEAR",
    "UTC",
    "Clock",
    "compact",
    "format_ts",
    "parse_instant",
    "real_monotonic",
    "sleep",
]


def real_monotonic() -> float:
    """Real elapsed-time reference for time limits and polling; never pinned, never recorded."""
    return time.monotonic()


def sleep(seconds: float) -> None:
    """Wait in real time (polling loops)."""
    time.sleep(seconds)


class Clock:
    """Wall time and elapsed time; pinned, both stand still (durations are 0)."""

    def __init__(self, pinned: _dt.datetime | None = None, source: str = "--now") -> None:
        self.pinned = pinned
        self.source = source  # how the operator pinned it (messages name it)

    @classmethod
    def from_env(cls, now: str | None = None) -> Clock:
        if now:
            return cls(parse_instant(now, "pinned time", arg="now"))
        env = os.environ.get("FACTORY_NOW")
        if env:
            return cls(parse_instant(env, "FACTORY_NOW"), source="FACTORY_NOW")
        return cls(None)

    def now(self) -> _dt.datetime:
        if self.pinned is not None:
            return self.pinned
        return _dt.datetime.now(UTC)

    def now_ts(self) -> str:
        return format_ts(self.now())

    def monotonic(self) -> float:
        if self.pinned is not None:
            return 0.0
        return time.monotonic()

    def elapsed(self, start: float) -> float:
        """Seconds since ``start`` (from :meth:`monotonic`), rounded to ms; 0 when pinned."""
        return round(self.monotonic() - start, 3)
