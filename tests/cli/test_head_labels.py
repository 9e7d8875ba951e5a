"""A label names one value: the command's ledger head (after run.finished) and the report's
(when it was written) are different heads, so they carry different labels."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.factory import write_config
from tests.support.repos import PINNED, make_repo, run_cli

HEAD = re.compile(r"^\s*([^:]*ledger head[^:]*): seq=(\d+) hash=([0-9a-f]{64})\s*$", re.M)


def test_no_ledger_head_label_names_two_values(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write_config(repo, {"checks": {"advisory": [{"name": "ok", "argv": ["{python}", "-V"]}]}})
    res = run_cli(
        "--repo", str(repo), "--now", PINNED, "oneshot", "--base-ref", "HEAD", "--dry-run"
    )
    assert res.returncode == 0, res.stderr
    report_line = next(ln for ln in res.stdout.splitlines() if ln.startswith("report: "))
    report = (repo / report_line.removeprefix("report: ")).read_text()
    seen: dict[str, set[tuple[str, str]]] = {}
    for text in (res.stdout, report):
        for label, seq, digest in HEAD.findall(text):
            seen.setdefault(label.strip(), set()).add((seq, digest))
    assert set(seen) == {"ledger head after this command", "ledger head"}
    assert all(len(values) == 1 for values in seen.values()), seen
    # The two heads really differ: the command's is later (report.written, run.finished).
    ((cmd_seq, _),) = seen["ledger head after this command"]
    ((rep_seq, _),) = seen["ledger head"]
    assert int(cmd_seq) > int(rep_seq)
