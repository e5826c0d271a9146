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

Printed: events/s ingested and p50/p99 request latency; events/s applied end to
end (first request to the last event applied, from the database); how many
events were applied twice (PaymentEvent rows per gateway event id; must be 0)
and whether every payment ended in its right state.

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
    import stripe

    deliveries = [(eid, body) for eid, body in events]
    deliveries += rng.sample(deliveries, int(len(deliveries) * redeliver))
    rng.shuffle(deliveries)
    out = []
    for eid, body in deliveries:
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret)
        out.append((eid, body, header))
    return out


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


def warm_up(port: int, clients: int) -> None:
    """Load the code path in every gunicorn worker: unsigned webhooks get 400 and store nothing."""
    warm = [("evt_warm", b'{"id": "evt_warm"}', "t=1,v1=00")] * (clients * 20)
    _s, _e, _l, statuses = drive(port, warm, clients)
    assert set(statuses) == {400}, statuses


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


def run(args: argparse.Namespace, rng: random.Random, secrets: list[str], stack: Stack, logdir: Path) -> int:
    from django.db import connection

    from accounts.models import Merchant
    from payments.models import Payment, PaymentEvent, WebhookEvent

    merchant = Merchant.objects.create(
        display_name="Bench", legal_name="Bench Ltd", country="GB", status="active"
    )
    rows = []
    for n in range(args.payments):
        pi = "pi_" + base64.b32encode(os.urandom(15)).decode().lower()
        rows.append(
            Payment(
                merchant=merchant,
                gateway="stripe",
                gateway_payment_id=pi,
                merchant_account="acct_benchmerchant",
                amount=1000 + n,
                currency="EUR",
                status="requires_action" if n % 2 else "processing",
            )
        )
    Payment.objects.bulk_create(rows, batch_size=1000)
    payments = [(p.public_id, p.gateway_payment_id, p.amount, p.status) for p in rows]
    events, expected = build_events(payments, rng)
    deliveries = sign_all(events, secrets[0], args.redeliver, rng)
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
    wait_http(port, stack)
    wait_celery(stack, args.celery_concurrency)
    warm_up(port, args.clients)

    unique = len(events)
    threads = f"{args.threads} threads" if args.worker_class == "gthread" else "1 thread"
    print(
        f"{args.payments} payments, {unique} events + {len(deliveries) - unique} redeliveries, shuffled; "
        f"gunicorn {args.workers} {args.worker_class} workers x {threads}, "
        f"Celery prefork x {args.celery_concurrency}, {args.clients} client connections"
    )
    cpu_web0, cpu_worker0 = stack.cpu_seconds("gunicorn"), stack.cpu_seconds("celery")
    started, ended, latencies, statuses = drive(port, deliveries, args.clients)
    cpu_web = stack.cpu_seconds("gunicorn") - cpu_web0
    stack.check_alive()
    if set(statuses) != {200}:
        raise RuntimeError(f"unexpected HTTP statuses: {statuses}; logs in {logdir}")
    ingest_rate = len(deliveries) / (ended - started)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]

    deadline = time.monotonic() + args.apply_timeout
    done = 0
    while time.monotonic() < deadline:
        done = WebhookEvent.objects.filter(status__in=["applied", "ignored"]).count()
        if done >= unique:
            break
        stack.check_alive()
        time.sleep(0.05)
    cpu_worker = stack.cpu_seconds("celery") - cpu_worker0
    from django.db.models import Count, Max

    stored = WebhookEvent.objects.count()
    last_applied = WebhookEvent.objects.aggregate(last=Max("applied_at"))["last"]
    applied_span = (last_applied.timestamp() - started) if last_applied else float("nan")
    apply_rate = unique / applied_span if done >= unique else float("nan")
    twice = (
        PaymentEvent.objects.exclude(gateway_event_id="")
        .values("gateway_event_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    finals = dict(Payment.objects.filter(merchant=merchant).values_list("public_id", "status"))
    wrong = sum(1 for pay, status in expected.items() if finals.get(pay) != status)
    failed_rows = WebhookEvent.objects.filter(status="failed").count()

    ok = done >= unique and stored == unique and twice == 0 and wrong == 0 and failed_rows == 0
    print(f"{'ingested':<34}{ingest_rate:>9.0f} events/s   (target >= {TARGET_INGEST})")
    print(f"{'request latency p50 / p99':<34}{p50:>9.1f} / {p99:.1f} ms   (target p99 < {TARGET_P99_MS:.0f})")
    print(f"{'applied end to end via Celery':<34}{apply_rate:>9.0f} events/s   (target >= {TARGET_APPLY})")
    print(
        f"{'CPU per request / per apply':<34}{cpu_web / len(deliveries) * 1000:>9.2f} / "
        f"{cpu_worker / unique * 1000:.2f} ms   (gunicorn / Celery processes; load-independent)"
    )
    print(f"{'stored webhook events':<34}{stored:>9} of {unique} unique ({len(deliveries)} deliveries)")
    print(f"{'applied or ignored':<34}{done:>9} of {unique}   failed: {failed_rows}")
    print(f"{'events applied twice':<34}{twice:>9}   (must be 0)")
    print(f"{'payments in the wrong final state':<34}{wrong:>9} of {len(expected)}   (must be 0)")
    met = ingest_rate >= TARGET_INGEST and p99 < TARGET_P99_MS and apply_rate >= TARGET_APPLY
    print(f"{'correct':<34}{'yes' if ok else 'NO':>9}   targets met: {'yes' if met else 'no'}")
    connection.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
