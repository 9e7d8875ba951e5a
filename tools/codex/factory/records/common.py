"""What every record shares: the artifact schema version."""

from __future__ import annotations

SCHEMA_VERSION = 1
