#!/usr/bin/env python
"""CPU the card-number guard costs per request body, by kind of body.

Bodies (each of the given size): ``letters`` (the baseline), ``1 1 1 ...``, ``4242 4242 ...``
(a card at the start: found at once), ``random digits`` (one unseparated string),
``234 234 ...`` (the worst case for the new search: every group could start a card, so each
one gets its Luhn checks) and ``4242 4242 4242 4241 ...`` (card-shaped groups, none valid).

Printed, in CPU milliseconds (``time.process_time``, this process only):

* ``search ms/MB``: the guard's search alone (``security.pan.contains_card_number`` in strict
  mode, the function the guard calls on every text it checks), per MB of body;
* ``page 2.5 MB``: an unauthenticated ``POST /team/`` of 2.5 MB through Django's test client
  (the issue's figure: the old guard searched it all before the redirect to sign-in; now the
  route's 64 KB body limit answers 413 before anything reads it);
* ``page 60 KB``: the same with a 60 KB body, under the limit, so the guard searches it;
* ``webhook 1 MB``: ``POST /webhooks/stripe/`` of 1 MB (JSON content type, not signed) through
  the gunicorn entry point ``fintech_portal.wsgi.application`` and its fast path;
* then the log redaction filter on a "Not Found" line with a 4 KB path (the longest request
  line gunicorn takes), by kind of path.

Only functions present before and after the change are used, so the same file measures both
(copy it into a checkout of the old code). ``--quick`` uses smaller bodies.

    python bench/card_guard.py [--quick]
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time

from _setup import django_on_scratch_db

MB = 1024 * 1024


def _repeat(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def bodies(size: int) -> dict[str, str]:
    rng = random.Random(1)
    return {
        "letters": _repeat("abcdefghij", size),
        "1 1 1 ...": _repeat("1 ", size),
        "4242 4242 ...": _repeat("4242 ", size),
        "random digits": "".join(rng.choice("0123456789") for _ in range(size)),
        "234 234 ... (worst)": _repeat("234 ", size),
        "4242 .. 4241 (no card)": _repeat("4242 4242 4242 4241 ", size),
    }


def cpu_ms(fn, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        fn()
        samples.append((time.process_time() - started) * 1000)
    return statistics.median(samples)


def wsgi_post(app, path: str, body: bytes, content_type: str) -> int:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"] = int(status.split()[0])

    result = app(environ, start_response)
    b"".join(result)
    getattr(result, "close", lambda: None)()
    return seen["status"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller bodies (a smoke run)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0

    django_on_scratch_db("card_guard")
    import logging

    from django.test import Client

    from fintech_portal.wsgi import application
    from security.pan import contains_card_number

    logging.disable(logging.WARNING)  # "Request Entity Too Large" and friends: not what is measured

    search_size, page_size, small_size, hook_size = (int(n * scale) for n in (MB, 2.5 * MB, 60_000, MB))
    search = bodies(search_size)
    page = bodies(page_size)
    small = bodies(small_size)
    hook = bodies(hook_size)
    client = Client()

    print(
        f"{'body':<24}{'search ms/MB':>14}{'page 2.5 MB':>14}{'status':>8}"
        f"{'page 60 KB':>12}{'status':>8}{'webhook 1 MB':>14}{'status':>8}"
    )
    client.post("/team/", data="warm-up", content_type="text/plain")  # first request: URLconf etc.
    wsgi_post(application, "/webhooks/stripe/", b"{}", "application/json")
    for name, text in search.items():
        rounds = 3 if name in ("letters", "random digits", "4242 4242 ...") else 1
        per_mb = cpu_ms(lambda t=text: contains_card_number(t, strict=True), rounds) * MB / len(text)
        statuses: dict[str, int] = {}

        def page_post(label: str, body: str, statuses: dict[str, int] = statuses) -> None:
            statuses[label] = client.post("/team/", data=body, content_type="text/plain").status_code

        def hook_post(body: bytes, statuses: dict[str, int] = statuses) -> None:
            statuses["hook"] = wsgi_post(application, "/webhooks/stripe/", body, "application/json")

        big_ms = cpu_ms(lambda b=page[name]: page_post("big", b), 1)
        small_ms = cpu_ms(lambda b=small[name]: page_post("small", b), 3)
        payload = hook[name].encode()
        hook_ms = cpu_ms(lambda b=payload: hook_post(b), 1)
        print(
            f"{name:<24}{per_mb:>14.1f}{big_ms:>14.1f}{statuses['big']:>8}"
            f"{small_ms * MB / small_size:>12.1f}{statuses['small']:>8}{hook_ms:>14.1f}{statuses['hook']:>8}"
        )
    print("(page 60 KB is shown per MB, i.e. 60 KB's CPU scaled to 1 MB; every figure is CPU ms)")

    # Every "Not Found: <path>" line and (now) every gunicorn access line goes through the log
    # redaction filter; gunicorn takes request lines of up to 4094 bytes.
    from security.logs import redact

    print(f"\n{'log line (4 KB path)':<32}{'redact() CPU ms':>16}")
    for name, unit in (
        ("letters", "abcdefghij"),
        ("a-a-a-...", "a-"),
        ("1-1-1-...", "1-"),
        ("a@a@a@...", "a@"),
    ):
        line = "Not Found: /" + _repeat(unit, 4000) + "/"
        print(f"{name:<32}{cpu_ms(lambda t=line: redact(t), 3):>16.1f}")


if __name__ == "__main__":
    main()
