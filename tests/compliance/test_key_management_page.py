"""Security officers see which key wraps what, and rotate with a progress bar."""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from payments.services import customer_for_email
from security.models import AuditEvent, DataKey, KeyRotation
from tests.conftest import make_user
from tests.security.conftest import random_key

pytestmark = pytest.mark.django_db

OLD = f"old:{random_key()}"
NEW = f"new:{random_key()}"


@pytest.fixture
def officer():
    user = make_user("sec@platform.example.com")
    user.groups.add(Group.objects.get(name="security_officer"))
    return user


def test_only_key_managers_open_the_page(verified_client, officer, owner):
    refused = verified_client(owner).get(reverse("key_management"))
    assert refused.status_code == 403
    assert "Key-encryption keys" not in refused.content.decode()
    opened = verified_client(officer).get(reverse("key_management"))
    assert opened.status_code == 200
    page = opened.content.decode()
    assert "<h1>Encryption keys</h1>" in page and "Key-encryption keys" in page


def test_rotation_runs_as_a_task_and_reports_progress(
    verified_client, officer, tenant, settings, django_capture_on_commit_callbacks
):
    # The run's own KEK stays configured: the fixtures' users' TOTP secrets are encrypted under it.
    run_keks = list(settings.FIELD_ENCRYPTION_KEYS)
    settings.FIELD_ENCRYPTION_KEYS = [OLD, *run_keks]
    for i in range(3):
        customer_for_email(merchant=tenant.merchant, email=f"p{i}@example.com")
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD, *run_keks]
    client = verified_client(officer)
    page = client.get(reverse("key_management")).content.decode()
    assert "still wrapped by an older KEK" in page and "Rotate to new" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("key_rotation_start"))
    assert response.status_code == 302
    run = KeyRotation.objects.get()
    assert run.status == KeyRotation.Status.COMPLETED
    assert set(DataKey.objects.values_list("kek_id", flat=True)) == {"new"}
    progress = client.get(reverse("key_rotation_progress", args=[run.public_id])).json()
    assert progress["status"] == "done" and progress["done"] == progress["total"] == run.total
    # What the officer sees afterwards, and what the audit log keeps.
    after = client.get(reverse("key_management")).content.decode()
    assert "Every data key is wrapped by the active KEK" in after and "Rotate to new" not in after
    started = AuditEvent.objects.get(action="crypto.rotation_started")
    assert started.actor_label == officer.email and started.target_id == run.public_id
    assert started.details == {"target_kek": "new", "data_keys": run.total}


def test_starting_a_rotation_needs_a_fresh_code(verified_client, officer):
    client = verified_client(officer)
    session = client.session
    session["otp_verified_at"] = int(time.time()) - 3600
    session.save()
    response = client.post(reverse("key_rotation_start"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("two_factor_step_up"))
    assert not KeyRotation.objects.exists()
    assert not AuditEvent.objects.filter(action="crypto.rotation_started").exists()


def test_the_progress_url_names_the_rotation_by_its_public_id_never_its_integer_key(
    verified_client, officer, tenant, settings
):
    run_keks = list(settings.FIELD_ENCRYPTION_KEYS)  # the fixtures' users' TOTP secrets use it
    settings.FIELD_ENCRYPTION_KEYS = [OLD, *run_keks]
    customer_for_email(merchant=tenant.merchant, email="p@example.com")
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD, *run_keks]
    client = verified_client(officer)
    client.post(reverse("key_rotation_start"))  # the task is not run: the rotation stays running
    run = KeyRotation.objects.get()

    page = client.get(reverse("key_management")).content.decode()
    [url] = re.findall(r'data-progress-url="([^"]+)"', page)
    assert re.fullmatch(r"/.*/rotations/krot_[A-Za-z0-9]{24}\.json", url), url
    assert url.rsplit("/", 1)[-1] == f"{run.public_id}.json"
    assert not re.search(r"/\d+\.json$", url)
    progress = client.get(url)
    assert progress.status_code == 200
    assert progress.json()["status"] == "running"

    by_integer = url.replace(run.public_id, str(run.pk))
    unknown = reverse("key_rotation_progress", args=["krot_" + "x" * 24])
    assert client.get(by_integer).status_code == 404
    assert client.get(unknown).status_code == 404


def test_a_rotation_made_before_public_ids_gets_one_of_its_own(transactional_db):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("security", "0004_key_rotation_permission")]
    after = [("security", "0005_keyrotation_public_id")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_model = executor.loader.project_state(before).apps.get_model("security", "KeyRotation")
    old_model.objects.create(target_kek_id="a")
    old_model.objects.create(target_kek_id="b")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)

    ids = list(KeyRotation.objects.values_list("public_id", flat=True))
    assert len(ids) == len(set(ids)) == 2
    assert all(re.fullmatch(r"krot_[A-Za-z0-9]{24}", i) for i in ids)
    # Going back to 0004 also unapplied what depends on 0005 (in every app): restore it all.
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
