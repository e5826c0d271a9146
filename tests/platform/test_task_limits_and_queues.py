"""Every Celery task has soft and hard time limits, and merchant webhooks run on their own queue."""

from __future__ import annotations

import pytest
from django.conf import settings

from fintech_portal.celery import app
from payments import merchant_webhooks
from security import outbound


def our_tasks() -> dict:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def limits(task) -> tuple[float | None, float | None]:  # noqa: ANN001
    return (
        task.soft_time_limit or app.conf.task_soft_time_limit,
        task.time_limit or app.conf.task_time_limit,
    )


def test_the_project_has_tasks_to_check():
    names = set(our_tasks())
    assert {
        "payments.deliver_merchant_webhook",
        "payments.apply_webhook_event",
        "security.rotate_data_keys",
    } <= names
    assert len(names) >= 15


@pytest.mark.parametrize("name", sorted(our_tasks()))
def test_every_task_has_a_soft_and_a_hard_time_limit(name: str):
    soft, hard = limits(our_tasks()[name])
    assert soft and hard, f"{name} has no time limit"
    assert 0 < soft < hard, f"{name}: soft {soft} s must come before hard {hard} s"


def test_a_webhook_attempt_is_stopped_by_the_deadline_first_then_the_limits_and_its_lease_outlasts_them():
    soft, hard = limits(our_tasks()["payments.deliver_merchant_webhook"])
    deadline = outbound.overall_deadline_seconds()
    assert deadline == settings.OUTBOUND_CONNECT_TIMEOUT + 2 * settings.OUTBOUND_READ_TIMEOUT
    assert deadline < soft < hard < merchant_webhooks.attempt_lease().total_seconds()


def test_merchant_webhook_deliveries_are_routed_to_their_own_queue_and_nothing_else_is():
    assert settings.MERCHANT_WEBHOOK_QUEUE == "merchant_webhooks"
    for name in our_tasks():
        queue = app.amqp.router.route({}, name)["queue"].name
        if name == "payments.deliver_merchant_webhook":
            assert queue == "merchant_webhooks"
        else:
            assert queue == settings.CELERY_TASK_DEFAULT_QUEUE == "celery", name


def test_smtp_has_a_timeout_too():
    # Sign-in and password-reset emails, and the key-rotation reminder task, talk to SMTP.
    assert 0 < settings.EMAIL_TIMEOUT <= 30
