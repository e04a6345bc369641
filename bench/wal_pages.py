"""SQLite write amplification: WAL pages written per one-alert notification, by b-tree.

    python bench/wal_pages.py [--notifications 200] [--rule]

On a fresh SQLite store (in-process, the same code as the webhook: parse, ``Intake.accept``),
after a warm-up of 50 notifications, the WAL is checkpointed and truncated; then N
notifications, each with one alert of its own group (a new incident each: the common case),
are ingested one transaction each, with automatic checkpoints off. The WAL file is then read
frame by frame: each frame is one page written by one commit, and its page number is mapped
to the table or index that owns it (``dbstat``). ``--rule`` adds one remediation rule that
matches, so each notification also enqueues a job.

Prints JSON: frames and bytes per notification, and frames per notification by b-tree.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import struct
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def notification(i: int, run: str) -> str:
    at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC) + timedelta(seconds=i)
    labels = {"alertname": f"WalBench{i % 7}", "instance": f"host-{run}-{i}:9100",
              "severity": "warning", "container": f"web-{i}"}
    return json.dumps({
        "version": "4", "groupKey": f'{{}}:{{instance="{labels["instance"]}"}}',
        "truncatedAlerts": 0, "status": "firing", "receiver": "remediator",
        "groupLabels": {"instance": labels["instance"]}, "commonLabels": labels,
        "commonAnnotations": {"summary": "bench"}, "externalURL": "http://am:9093",
        "alerts": [{"status": "firing", "labels": labels,
                    "annotations": {"summary": f"{labels['instance']} is slow"},
                    "startsAt": at.isoformat().replace("+00:00", "Z"),
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph",
                    "fingerprint": f"{run}{i:012x}"}],
    })


def wal_frames(wal: Path) -> tuple[int, list[int], int]:
    """(page size, the page number of every frame, commits) of a WAL file."""
    data = wal.read_bytes()
    if len(data) < 32:
        return 4096, [], 0
    page_size = struct.unpack(">I", data[8:12])[0]
    pages, commits, pos = [], 0, 32
    while pos + 24 + page_size <= len(data):
        pgno, size_after = struct.unpack(">II", data[pos:pos + 8])
        pages.append(pgno)
        commits += size_after != 0
        pos += 24 + page_size
    return page_size, pages, commits


def measure(n: int, with_rule: bool) -> dict[str, Any]:
    from receiver.audit.chain import AuditKey
    from receiver.config import parse_config
    from receiver.intake.alertmanager import Notification
    from receiver.intake.engine import Intake
    from receiver.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="bench-wal-"))
    try:
        db = tmp / "remediator.db"
        # keyed like every deployment's chain (serve creates the key on first start)
        store = open_store(f"sqlite:///{db}", pool_min=0, pool_max=1,
                           audit_key=AuditKey(b"bench-wal-pages-audit-key"))
        store.db.WAL_AUTOCHECKPOINT_PAGES = 0  # type: ignore[attr-defined]
        store.migrate()
        raw: dict[str, Any] = {"store": {"url": f"sqlite:///{db}"}}
        if with_rule:
            raw["rules"] = [{"name": "restart-web", "matchers": ['alertname=~"WalBench.*"'],
                             "playbook": "restart_container",
                             "params": {"name": "{{ labels.container }}"}}]
            raw["targets"] = {"containers": {"patterns": ["web-*"]}}
        intake = Intake(parse_config(raw), store)
        for i in range(50):
            body = notification(i, "warm")
            intake.accept(Notification.model_validate_json(body), body)
        store.db.checkpoint()  # type: ignore[attr-defined]
        for i in range(n):
            body = notification(i, "run")
            intake.accept(Notification.model_validate_json(body), body)
        page_size, pages, commits = wal_frames(db.with_name(db.name + "-wal"))
        owner: dict[int, str] = {}
        probe = sqlite3.connect(db)
        try:
            for name, pageno in probe.execute("SELECT name, pageno FROM dbstat"):
                owner[pageno] = name
        finally:
            probe.close()
        store.close()
        by_tree = Counter(owner.get(p, "(freelist or new)") for p in pages)
        return {
            "notifications": n,
            "commits": commits,
            "page_size": page_size,
            "frames_per_notification": round(len(pages) / n, 2),
            "kib_per_notification": round(len(pages) * (page_size + 24) / n / 1024, 1),
            "frames_per_notification_by_btree": {
                name: round(count / n, 2) for name, count in by_tree.most_common()},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notifications", type=int, default=200)
    ap.add_argument("--rule", action="store_true", help="one matching rule: a job each")
    args = ap.parse_args()
    print(json.dumps(measure(args.notifications, args.rule), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
