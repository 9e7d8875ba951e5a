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

from tools.codex.factory.errors import UsageError

UTC = _dt.timezone.utc


MIN_YEAR = 1970
MAX_YEAR = 9999


def parse_instant(text: str, source: str = "--now", *, bounded: bool = True) -> _dt.datetime:
    """Parse an ISO-8601 instant; a naive value is taken as UTC.

    ``bounded`` (the clock): the UTC year must be 1970..9999, so every timestamp has the fixed
    width that makes strings sort as times (a year 999 would sort after 2026 and pin the
    ledger's never-decreasing ``ts_utc`` there for good). Filters (``--since``) take any year.
    """
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = _dt.datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(
            f"{source}: {text!r} is not an ISO-8601 instant (e.g. 2026-11-21T20:15:00Z)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise UsageError(
            f"{source}: {text!r} is outside the years {MIN_YEAR}..{MAX_YEAR} in UTC"
        ) from None
    if bounded and not MIN_YEAR <= value.year <= MAX_YEAR:
        raise UsageError(f"{source}: {text!r} is outside the years {MIN_YEAR}..{MAX_YEAR} in UTC")
    return value


def format_ts(value: _dt.datetime) -> str:
    """RFC 3339 with microseconds and ``Z``: fixed width (the year zero-padded to 4 digits),
    so strings sort as times."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def compact(value: _dt.datetime) -> str:
    """``YYYYMMDD_HHMMSS`` as used in run IDs."""
    return value.astimezone(UTC).strftime("%Y%m%d_%H%M%S")


def real_monotonic() -> float:
    """Real elapsed-time reference for time limits and polling; never pinned, never recorded."""
    return time.monotonic()


def sleep(seconds: float) -> None:
    """Wait in real time (polling loops)."""
    time.sleep(seconds)


class Clock:
    """Wall time and elapsed time; pinned, both stand still (durations are 0)."""

    def __init__(self, pinned: _dt.datetime | None = None) -> None:
        self.pinned = pinned

    @classmethod
    def from_env(cls, now: str | None = None) -> Clock:
        if now:
            return cls(parse_instant(now, "--now"))
        env = os.environ.get("FACTORY_NOW")
        if env:
            return cls(parse_instant(env, "FACTORY_NOW"))
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
