"""Time formats: parsing an instant, the stored timestamp form and the run-ID stamp.

Pure: nothing here reads the clock (that is :mod:`infra.clock`).
"""

from __future__ import annotations

import datetime as _dt

from tools.codex.factory.errors import ArgumentError, UsageError

UTC = _dt.timezone.utc


MIN_YEAR = 1970
MAX_YEAR = 9999


def parse_instant(
    text: str, source: str = "instant", *, arg: str | None = None, bounded: bool = True
) -> _dt.datetime:
    """Parse an ISO-8601 instant; a naive value is taken as UTC.

    ``bounded`` (the clock): the UTC year must be 1970..9999, so every timestamp has the fixed
    width that makes strings sort as times (a year 999 would sort after 2026 and pin the
    ledger's never-decreasing ``ts_utc`` there for good). Filters (``since``) take any year.
    ``source`` names where the text came from; ``arg``, the argument it is (the CLI names its
    option).
    """

    def refuse(detail: str) -> UsageError:
        if arg is not None:
            return ArgumentError(arg, detail, label=source)
        return UsageError(f"{source}: {detail}")

    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = _dt.datetime.fromisoformat(raw)
    except ValueError:
        raise refuse(f"{text!r} is not an ISO-8601 instant (e.g. 2026-11-21T20:15:00Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise refuse(f"{text!r} is outside the years {MIN_YEAR}..{MAX_YEAR} in UTC") from None
    if bounded and not MIN_YEAR <= value.year <= MAX_YEAR:
        raise refuse(f"{text!r} is outside the years {MIN_YEAR}..{MAX_YEAR} in UTC")
    return value


def format_ts(value: _dt.datetime) -> str:
    """RFC 3339 with microseconds and ``Z``: fixed width (the year zero-padded to 4 digits),
    so strings sort as times."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def compact(value: _dt.datetime) -> str:
    """``YYYYMMDD_HHMMSS`` as used in run IDs."""
    return value.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
