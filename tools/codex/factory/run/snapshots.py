"""The run's content-addressed snapshot store: the exact bytes validation judged.

``snapshots/<sha256>`` in the run folder. Validation puts every bundle file it judged there
(DIFF.patch as it will be applied); integration reads them back by the hash validation recorded
and refuses any whose bytes no longer hash to it (rule ``snapshot-changed``), so a bundle swapped
after validation, or a snapshot edited in place, never reaches the sandbox.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tools.codex.factory.errors import BlockedError, UsageError
from tools.codex.factory.infra.fsutil import read_file
from tools.codex.factory.infra.writer import GuardedWriter

SNAPSHOT_DIR = "snapshots"


def put(writer: GuardedWriter, data: bytes) -> str:
    """Keep ``data`` under its sha256 (written once; a damaged copy is rewritten); return the hash."""
    digest = hashlib.sha256(data).hexdigest()
    rel = f"{SNAPSHOT_DIR}/{digest}"
    path = writer.root / SNAPSHOT_DIR / digest
    try:
        if path.is_file() and not path.is_symlink():
            current = read_file(path, rel, limit=len(data))
            if current == data:
                writer.written[rel] = digest
                return digest
    except UsageError:
        pass  # damaged or replaced: written again below
    writer.write(rel, data)
    return digest


def get(run_dir: Path, digest: str, limit: int) -> bytes:
    """The snapshot with this sha256, verified; BlockedError naming the rule otherwise."""
    rel = f"{SNAPSHOT_DIR}/{digest}"
    try:
        data = read_file(run_dir / SNAPSHOT_DIR / digest, rel, limit=limit)
    except UsageError as exc:
        raise BlockedError(
            f"[snapshot-missing] {exc}: the validated bytes are gone; run bundle-validate again"
        ) from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise BlockedError(
            f"[snapshot-changed] {rel} no longer holds the bytes bundle-validate judged; "
            "run bundle-validate again"
        )
    return data
