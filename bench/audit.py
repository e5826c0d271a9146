"""Audit log costs: appends per second with 4 concurrent writers, verify time per 100,000 events.

Run from the repository root: ``python bench/audit.py`` (needs PostgreSQL on 127.0.0.1:5432;
it creates and drops the scratch database ``fp_bench_security_audit``).
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import setup  # noqa: E402

VENDOR = setup("fp_bench_security_audit", require_postgres=True)

from django.db import connections, transaction  # noqa: E402

from security import audit  # noqa: E402
from security.models import AuditChainHead, AuditEvent  # noqa: E402

WRITERS = 4
PER_WRITER = 1_500
VERIFY_EVENTS = 100_000


def writer(n: int, errors: list[str]) -> None:
    try:
        for i in range(PER_WRITER):
            with transaction.atomic():
                audit.record(
                    actor=f"writer{n}@example.com",
                    action="bench.append",
                    target=("bench.thing", f"thing_{i}"),
                    merchant="mer_bench",
                    details={"i": i, "writer": n},
                )
    except Exception as exc:  # noqa: BLE001
        errors.append(repr(exc))
    finally:
        connections.close_all()


def _process_writer(n: int) -> None:
    errors: list[str] = []
    writer(n, errors)
    if errors:
        raise SystemExit(f"writer {n} failed: {errors[0]}")


def appends() -> None:
    """Four writer processes (like four gunicorn workers), each appending in its own transactions."""
    audit.record(actor="bench", action="bench.warmup")
    connections.close_all()
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_process_writer, args=(n,)) for n in range(WRITERS)]
    started = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    if any(p.exitcode for p in processes):
        raise SystemExit("a writer process failed")
    total = WRITERS * PER_WRITER
    print(f"[{VENDOR}] audit appends, {WRITERS} concurrent writers, one event per transaction: "
          f"{total / elapsed:,.0f} events/s ({total} events in {elapsed:.2f} s; "
          "target >= 1,000/s)")  # fmt: skip
    report = audit.verify_chain()
    assert report.ok, report.describe()


def build_chain(count: int) -> None:
    """Append ``count`` events straight into the table (same keyed hashing as record()), then verify."""
    head = AuditChainHead.objects.get()
    sequence, prev = head.last_sequence, head.last_hash
    start = datetime.now(UTC) - timedelta(days=1)
    batch: list[AuditEvent] = []
    for i in range(count):
        sequence += 1
        event = AuditEvent(
            sequence=sequence,
            occurred_at=start + timedelta(microseconds=i * 7),
            actor_id="usr_bench",
            actor_label="bench@example.com",
            action="bench.bulk",
            target_type="bench.thing",
            target_id=f"thing_{i}",
            merchant_id="mer_bench",
            ip="203.0.113.7",
            user_agent="bench/1.0",
            details={"i": i, "note": "x" * 40},
            prev_hash=prev,
        )
        event.hash = audit.compute_hash(event)
        prev = event.hash
        batch.append(event)
        if len(batch) == 5_000:
            AuditEvent.objects.bulk_create(batch)
            batch = []
    if batch:
        AuditEvent.objects.bulk_create(batch)
    AuditChainHead.objects.filter(id=1).update(last_sequence=sequence, last_hash=prev)


def verify() -> None:
    existing = AuditEvent.objects.count()
    build_chain(VERIFY_EVENTS)
    total = existing + VERIFY_EVENTS
    started = time.perf_counter()
    report = audit.verify_chain()
    elapsed = time.perf_counter() - started
    assert report.ok, report.describe()
    print(f"[{VENDOR}] verify_audit_chain: {report.checked:,} events in {elapsed:.2f} s = "
          f"{elapsed / total * 100_000:.2f} s per 100,000 events (target < 10 s)")  # fmt: skip


if __name__ == "__main__":
    appends()
    verify()
