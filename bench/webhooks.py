#!/usr/bin/env python
"""Signed Stripe webhooks through the real stack: gunicorn, PostgreSQL, Redis and a Celery worker.

A scratch PostgreSQL database gets a merchant with N Stripe payments, half in
``requires_action`` and half in ``processing``. Each payment receives two events,
``payment_intent.processing`` and then ``payment_intent.succeeded`` (80%) or
``payment_intent.payment_failed`` (20%), one second apart. 20% of the events are
delivered twice (same event id, signed again) and the whole delivery list is
shuffled, so a final event often arrives before the ``processing`` event it
follows. A fixed number of client threads (keep-alive ``http.client``
connections to 127.0.0.1) POST them to ``/webhooks/stripe/`` of a gunicorn
started with ``deploy/gunicorn.conf.py``; a real Celery worker on Redis applies them.

It runs twice, on two sets of payments. First the web tier alone: gunicorn stores and
verifies while no Celery worker runs yet (how the issue's reference figure for
dj-stripe, storing and verifying only, was taken); then the worker starts and applies
that backlog. Then end to end: the second set's events arrive while the worker applies.

Printed: events/s ingested and p50/p99 request latency, for the web tier alone and
while the worker applies; the backlog's apply rate; events/s applied end to end
(first request to the last event applied, from the database); how many events were
applied twice (PaymentEvent rows per gateway event id; must be 0) and whether every
payment ended in its right state.

Needs PostgreSQL on 127.0.0.1:5432 (``BENCH_PG_ADMIN_URL``) and Redis
(``BENCH_REDIS_URL``, default db 14, which is flushed). Everything it starts is
stopped and the database dropped at the end, also on Ctrl-C or an error.

    python bench/webhooks.py [--payments 2000] [--clients 16] [--worker-class gthread]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _setup import ROOT, setup

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
TARGET_INGEST, TARGET_P99_MS, TARGET_APPLY = 950, 50.0, 240


def _secret(prefix: str) -> str:
    return prefix + base64.b32encode(os.urandom(20)).decode().lower()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--payments", type=int, default=2000)
    p.add_argument("--clients", type=int, default=8, help="concurrent client connections")
    p.add_argument("--redeliver", type=float, default=0.2, help="share of events delivered twice")
    p.add_argument(
        "--worker-class", choices=["sync", "gthread"], default=os.environ.get("BENCH_WORKER_CLASS", "gthread")
    )
    p.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 2)))
    p.add_argument("--threads", type=int, default=int(os.environ.get("GUNICORN_THREADS", "2")))
    p.add_argument(
        "--celery-concurrency", type=int, default=int(os.environ.get("CELERY_WORKER_CONCURRENCY", "2"))
    )
    p.add_argument("--apply-timeout", type=float, default=180.0, help="seconds to wait for the worker")
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--keep-logs", action="store_true", help="keep gunicorn's and Celery's logs")
    return p.parse_args()


# --- Events -----------------------------------------------------------------------------------------


def _intent(pi: str, pay: str, amount: int, status: str, created: int) -> dict:
    """A PaymentIntent shaped like the ones Stripe's webhooks carry (charge not expanded)."""
    failed = status == "requires_payment_method"
    return {
        "id": pi,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount if status == "succeeded" else 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{pi}_secret_{'x' * 24}",
        "confirmation_method": "automatic",
        "created": created - 5,
        "currency": "eur",
        "customer": None,
        "description": "Order from the webhook benchmark",
        "last_payment_error": (
            {
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                "message": "Your card has insufficient funds.",
                "type": "card_error",
            }
            if failed
            else None
        ),
        "latest_charge": "ch_" + pi[3:],
        "livemode": False,
        "metadata": {"payment_id": pay},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": "pm_" + pi[3:],
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            }
        },
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def build_events(payments: list[tuple[str, str, int, str]], rng: random.Random) -> tuple[list, dict]:
    """Two events per payment; returns (events, expected final status per payment public id)."""
    base = int(time.time()) - 120
    events, expected = [], {}
    for n, (pay, pi, amount, _start) in enumerate(payments):
        created = base + (n % 60)
        final_ok = rng.random() >= 0.2
        account = "acct_benchmerchant"
        pairs = [
            ("payment_intent.processing", "processing", created),
            (
                "payment_intent.succeeded" if final_ok else "payment_intent.payment_failed",
                "succeeded" if final_ok else "requires_payment_method",
                created + 1,
            ),
        ]
        for kind, status, at in pairs:
            obj = _intent(pi, pay, amount, status, at)
            event = {
                "id": "evt_" + base64.b32encode(os.urandom(15)).decode().lower(),
                "object": "event",
                "account": account,
                "api_version": "2025-03-31.basil",
                "created": at,
                "data": {"object": obj},
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": kind,
            }
            # Stripe sends pretty-printed JSON.
            events.append((event["id"], json.dumps(event, indent=2).encode()))
        expected[pay] = "succeeded" if final_ok else "failed"
    return events, expected


def sign_all(events: list[tuple[str, bytes]], secret: str, redeliver: float, rng: random.Random) -> list:
    deliveries = [(eid, body) for eid, body in events]
    deliveries += rng.sample(deliveries, int(len(deliveries) * redeliver))
    rng.shuffle(deliveries)
    out = []
    for eid, body in deliveries:
        out.append((eid, body, _signature(body, secret)))
    return out


def _signature(body: bytes, secret: str) -> str:
    import stripe

    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret)


# --- Processes --------------------------------------------------------------------------------------


class Stack:
    """gunicorn and a Celery worker, started in their own process groups and always stopped."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], extra_env: dict[str, str]) -> None:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            argv,
            cwd=ROOT,
            env={**self.env, **extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append((name, proc))

    def cpu_seconds(self, name: str) -> float:
        """CPU time used so far by a started process and everything in its process group
        (including children that already exited, such as recycled gunicorn workers)."""
        leader = dict(self.procs)[name].pid
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # fields[0] is the state (stat field 3): pgrp is field 5, utime..cstime fields 14..17.
            if int(fields[2]) != leader:
                continue
            utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
            total += utime + stime + (cutime + cstime if int(entry.name) == leader else 0)
        return total / tick

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.logdir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for _name, proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.procs.clear()


def wait_http(port: int, stack: Stack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer /healthz in time")


def wait_celery(stack: Stack, concurrency: int, timeout: float = 60) -> None:
    from fintech_portal.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        replies = app.control.ping(timeout=1.0)
        if replies:
            return
    raise RuntimeError("the Celery worker did not answer a ping in time")


# --- Load -------------------------------------------------------------------------------------------


def drive(port: int, deliveries: list, clients: int) -> tuple[float, float, list[float], dict[int, int]]:
    """POST every delivery once from ``clients`` threads; returns (start, end, latencies ms, statuses)."""
    lock = threading.Lock()
    cursor = iter(range(len(deliveries)))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        codes: dict[int, int] = {}
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                break
            _eid, body, header = deliveries[i]
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": header,
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                "X-Forwarded-Proto": "https",
            }
            for attempt in range(3):
                started = time.perf_counter()
                try:
                    conn.request("POST", "/webhooks/stripe/", body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    if attempt == 2:
                        errors.append(repr(exc))
                    continue
                mine.append((time.perf_counter() - started) * 1000)
                codes[response.status] = codes.get(response.status, 0) + 1
                if response.will_close:
                    conn.close()
                break
        conn.close()
        with lock:
            latencies.extend(mine)
            for code, count in codes.items():
                statuses[code] = statuses.get(code, 0) + count

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ended = time.time()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return started, ended, latencies, statuses


def warm_up(port: int, clients: int, secret: str) -> int:
    """Run the code paths once in every gunicorn worker, as a server that has been up a while has:
    unsigned webhooks get 400 and store nothing; signed events of a type we ignore are stored.
    Returns how many were stored."""
    warm = [("evt_warm", b'{"id": "evt_warm"}', "t=1,v1=00")] * (clients * 20)
    _s, _e, _l, statuses = drive(port, warm, clients)
    assert set(statuses) == {400}, statuses
    ignored = []
    for _ in range(clients * 20):
        event_id = "evt_" + base64.b32encode(os.urandom(15)).decode().lower()
        body = json.dumps(
            {
                "id": event_id,
                "object": "event",
                "type": "customer.created",
                "created": int(time.time()),
                "data": {"object": {"id": "cus_warm", "object": "customer"}},
                "livemode": False,
            }
        ).encode()
        ignored.append((event_id, body, _signature(body, secret)))
    _s, _e, _l, statuses = drive(port, ignored, clients)
    assert set(statuses) == {200}, statuses
    return len(ignored)


# --- Main -------------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    rng = random.Random(args.seed)
    secrets = [_secret("whsec_"), _secret("whsec_")]
    dead_port = _free_port()  # nothing listens: a gateway call from the webhook path would fail loudly
    os.environ.update(
        {
            "STRIPE_SECRET_KEY": "sk_test_" + "bench" * 4,
            "STRIPE_PUBLISHABLE_KEY": "pk_test_" + "bench" * 4,
            "STRIPE_WEBHOOK_SECRET": ",".join(secrets),
            "STRIPE_API_BASE": f"http://127.0.0.1:{dead_port}",
            "REDIS_URL": REDIS_URL,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "TRUST_X_FORWARDED_PROTO": "1",
            "STATIC_MANIFEST": "0",
        }
    )
    logdir = Path(tempfile.mkdtemp(prefix="fp-bench-webhooks-"))
    stack = Stack({}, logdir)
    interrupted = False

    def on_term(signum, frame):  # noqa: ANN001, ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        setup("fp_bench_webhooks", require_postgres=True)
        return run(args, rng, secrets, stack, logdir)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        stack.stop()
        try:
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()
        except Exception:  # noqa: BLE001, S110 - best effort
            pass
        if args.keep_logs or interrupted:
            print(f"logs: {logdir}", file=sys.stderr)
        else:
            for f in logdir.glob("*.log"):
                f.unlink()
            logdir.rmdir()


def _payments(merchant, n: int) -> list:  # noqa: ANN001 - a Merchant
    from payments.models import Payment

    rows = []
    for i in range(n):
        pi = "pi_" + base64.b32encode(os.urandom(15)).decode().lower()
        rows.append(
            Payment(
                merchant=merchant,
                gateway="stripe",
                gateway_payment_id=pi,
                merchant_account="acct_benchmerchant",
                amount=1000 + i,
                currency="EUR",
                status="requires_action" if i % 2 else "processing",
            )
        )
    Payment.objects.bulk_create(rows, batch_size=1000)
    return [(p.public_id, p.gateway_payment_id, p.amount, p.status) for p in rows]


def _wait_applied(stack: Stack, object_ids: list[str], done_target: int, timeout: float) -> tuple[bool, list]:
    """Wait until ``done_target`` events in all are applied or ignored (a cheap count, polled a few
    times a second so the polling costs the machine little); returns (reached, the phase's
    applied_at times)."""
    from payments.models import WebhookEvent

    deadline = time.monotonic() + timeout
    reached = False
    while time.monotonic() < deadline:
        if WebhookEvent.objects.filter(status__in=["applied", "ignored"]).count() >= done_target:
            reached = True
            break
        stack.check_alive()
        time.sleep(0.2)
    phase = WebhookEvent.objects.filter(object_id__in=object_ids).exclude(applied_at=None)
    return reached, sorted(phase.values_list("applied_at", flat=True))


def _latency(latencies: list[float]) -> tuple[float, float]:
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


def run(args: argparse.Namespace, rng: random.Random, secrets: list[str], stack: Stack, logdir: Path) -> int:
    from django.db import connection
    from django.db.models import Count

    from accounts.models import Merchant
    from payments.models import Payment, PaymentEvent, WebhookEvent

    merchant = Merchant.objects.create(
        display_name="Bench", legal_name="Bench Ltd", country="GB", status="active"
    )
    phases = []
    for _ in range(2):
        payments = _payments(merchant, args.payments)
        events, expected = build_events(payments, rng)
        phases.append((payments, events, expected, sign_all(events, secrets[0], args.redeliver, rng)))
    connection.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(ROOT)
    env.pop("CACHE_URL", None)  # the processes share Redis as their cache, as in production
    stack.env = env
    port = _free_port()
    python = sys.executable
    web_env = {
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(args.workers),
        "GUNICORN_THREADS": "1" if args.worker_class == "sync" else str(args.threads),
    }
    stack.start(
        "gunicorn",
        [python, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "fintech_portal.wsgi"],
        web_env,
    )
    wait_http(port, stack)
    warmed = warm_up(port, args.clients, secrets[0])
    unique = len(phases[0][1])
    deliveries = len(phases[0][3])
    threads = f"{args.threads} threads" if args.worker_class == "gthread" else "1 thread"
    print(
        f"twice {args.payments} payments, {unique} events + {deliveries - unique} redeliveries each, "
        f"shuffled; gunicorn {args.workers} {args.worker_class} workers x {threads}, "
        f"Celery prefork x {args.celery_concurrency}, {args.clients} client connections"
    )

    # Phase 1: the web tier alone stores and verifies (the worker is not running yet), as the
    # issue's reference figure for dj-stripe was taken; the drains wait in Redis.
    cpu0 = stack.cpu_seconds("gunicorn")
    started1, ended1, latencies1, statuses1 = drive(port, phases[0][3], args.clients)
    cpu_web1 = stack.cpu_seconds("gunicorn") - cpu0
    ingest1 = deliveries / (ended1 - started1)
    p50_1, p99_1 = _latency(latencies1)

    # The worker starts and applies phase 1's backlog.
    stack.start(
        "celery",
        [
            python,
            "-m",
            "celery",
            "-A",
            "fintech_portal",
            "worker",
            "--loglevel=WARNING",
            f"--concurrency={args.celery_concurrency}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        {},
    )
    wait_celery(stack, args.celery_concurrency)
    ids1 = [pi for _pay, pi, _amount, _status in phases[0][0]]
    reached1, times1 = _wait_applied(stack, ids1, warmed + unique, args.apply_timeout)
    backlog_rate = unique / (times1[-1] - times1[0]).total_seconds() if reached1 else float("nan")

    # Phase 2: end to end, the worker applying while the events arrive.
    cpu_web0, cpu_worker0 = stack.cpu_seconds("gunicorn"), stack.cpu_seconds("celery")
    started2, ended2, latencies2, statuses2 = drive(port, phases[1][3], args.clients)
    cpu_web2 = stack.cpu_seconds("gunicorn") - cpu_web0
    ingest2 = deliveries / (ended2 - started2)
    p50_2, p99_2 = _latency(latencies2)
    ids2 = [pi for _pay, pi, _amount, _status in phases[1][0]]
    reached2, times2 = _wait_applied(stack, ids2, warmed + 2 * unique, args.apply_timeout)
    cpu_worker = stack.cpu_seconds("celery") - cpu_worker0
    apply_rate = unique / (times2[-1].timestamp() - started2) if reached2 else float("nan")
    stack.check_alive()
    for statuses in (statuses1, statuses2):
        if set(statuses) != {200}:
            raise RuntimeError(f"unexpected HTTP statuses: {statuses}; logs in {logdir}")

    stored = WebhookEvent.objects.count() - warmed
    twice = (
        PaymentEvent.objects.exclude(gateway_event_id="")
        .values("gateway_event_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    finals = dict(Payment.objects.filter(merchant=merchant).values_list("public_id", "status"))
    expected = phases[0][2] | phases[1][2]
    wrong = sum(1 for pay, status in expected.items() if finals.get(pay) != status)
    failed_rows = WebhookEvent.objects.filter(status="failed").count()

    done = WebhookEvent.objects.filter(status__in=["applied", "ignored"]).count() - warmed
    ok = reached1 and reached2 and stored == 2 * unique and twice == 0 and wrong == 0
    ok = ok and failed_rows == 0
    print(f"{'ingested, web tier alone':<38}{ingest1:>9.0f} events/s   (target >= {TARGET_INGEST})")
    target_p99 = f"(target p99 < {TARGET_P99_MS:.0f})"
    print(f"{'  request latency p50 / p99':<38}{p50_1:>9.1f} / {p99_1:.1f} ms   {target_p99}")
    print(f"{'  web CPU per request':<38}{cpu_web1 / deliveries * 1000:>9.2f} ms")
    print(f"{'backlog applied by the worker':<38}{backlog_rate:>9.0f} events/s   (first to last applied)")
    print(f"{'ingested while the worker applies':<38}{ingest2:>9.0f} events/s")
    print(f"{'  request latency p50 / p99':<38}{p50_2:>9.1f} / {p99_2:.1f} ms")
    print(f"{'applied end to end via Celery':<38}{apply_rate:>9.0f} events/s   (target >= {TARGET_APPLY})")
    print(
        f"{'  CPU per request / per apply':<38}{cpu_web2 / deliveries * 1000:>9.2f} / "
        f"{cpu_worker / unique * 1000:.2f} ms   (gunicorn / Celery processes)"
    )
    print(f"{'stored webhook events':<38}{stored:>9} of {2 * unique} unique ({2 * deliveries} deliveries)")
    print(f"{'applied or ignored':<38}{done:>9} of {2 * unique}   failed: {failed_rows}")
    print(f"{'events applied twice':<38}{twice:>9}   (must be 0)")
    print(f"{'payments in the wrong final state':<38}{wrong:>9} of {len(expected)}   (must be 0)")
    met = ingest1 >= TARGET_INGEST and p99_1 < TARGET_P99_MS and apply_rate >= TARGET_APPLY
    print(f"{'correct':<38}{'yes' if ok else 'NO':>9}   targets met: {'yes' if met else 'no'}")
    connection.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
