"""gunicorn settings, overridable by environment variables."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")  # noqa: S104 - inside a container
# One process per core, two threads each (gthread: keep-alive connections, and a thread can
# run while the other waits on PostgreSQL or Redis). Measured with bench/webhooks.py on 2 cores:
# 2 x 2 gthread beat 4-5 sync workers and 3 x 4 gthread (fewer processes competing for the CPU,
# less GIL hand-off). Set WEB_CONCURRENCY / GUNICORN_THREADS=1 for sync workers.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
worker_class = "sync" if threads == 1 else "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# Recycle a worker now and then (a leak stays bounded); restarting one costs a second of CPU, so
# not too often: at webhook rates 2,000 requests pass in a few seconds.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "20000"))
max_requests_jitter = 2000
accesslog = "-"
errorlog = "-"
# Query strings can carry ids; never log request bodies or headers with credentials.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
# Paths can carry secrets (invitation tokens, password-reset keys): every access and error
# line goes through the project's redaction filter before it is written.
logger_class = "security.access_log.RedactingGunicornLogger"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
