"""The Celery application. Tasks live in each app's ``tasks.py``."""

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fintech_portal.settings")

app = Celery("fintech_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.include = ["fintech_portal.tasks"]


# Database connections in workers follow the same rules as in web requests. Celery's Django
# fix-up would otherwise close every connection after every task (unless CELERY_DB_REUSE_MAX
# is set, which settings does), so each task paid a fresh PostgreSQL connection: more than
# the work itself for a webhook apply. Around each task, Django's own ``close_old_connections``
# drops a connection that is older than CONN_MAX_AGE, broken, or left in a failed transaction,
# and keeps a healthy one (re-checked before use with CONN_HEALTH_CHECKS). Not for a task run
# eagerly inside the caller's process (and possibly inside its transaction), like Celery's own.
def _close_old_db_connections(task: Any) -> None:
    if getattr(getattr(task, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@task_prerun.connect
def _db_connections_before_task(task: Any = None, **kwargs: Any) -> None:
    _close_old_db_connections(task)


@task_postrun.connect
def _db_connections_after_task(task: Any = None, **kwargs: Any) -> None:
    _close_old_db_connections(task)
