"""The attacker's suite: a victim merchant full of rows, an outsider, and what "nothing changed" means.

``build_world`` gives the victim merchant (``tests.conftest.make_tenant``: an owner and an analyst
teammate) one row of every kind a merchant URL can name: a paid payment with a refund, an open
payment link, a finished export holding customers' full emails (the owner's), a fraud rule, a
webhook endpoint with a delivery, a pending invitation, an
API key, plus a staff key rotation. The outsider is another merchant with its own owner.

``snapshot`` reads every row the victim owns (every model with a ``merchant`` foreign key, rows
hanging off those, the victim's people and their authenticators, and the platform's own tables),
so a test compares it before and after an attack: the attack changed nothing if they are equal.

The URL walk is the one in ``tests/platform/test_every_page_needs_two_factor.py``; this module
only adds how to fill each URL's ids with the victim's rows.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import Q
from django.test import Client
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from accounts import services as account_services
from accounts.api_keys import api_key_create
from accounts.models import ApiKey, EncryptedTOTPDevice, Invitation, Membership, Merchant, Role, User
from payments import exports, services
from payments.merchant_webhooks import webhook_endpoint_create
from payments.models import (
    CheckoutSession,
    FraudRule,
    Payment,
    PaymentExport,
    Refund,
    WebhookDelivery,
    WebhookEndpoint,
)
from security.fields import Sealed
from security.ids import new_public_id
from security.models import AuditEvent, KeyRotation
from tests.conftest import Tenant, login_verified, make_tenant, make_user
from tests.payments.api_helpers import succeeded_payment
from tests.payments.fraud_helpers import add_rule
from tests.payments.webhook_helpers import FakeDNS
from tests.platform.test_every_page_needs_two_factor import VIEW_NAMES, _params_for, sample_url

# What a refusal looks like: the object is not there for you (404) or you may not (403).
REFUSED = frozenset({403, 404})
# A method the view never accepts is refused before any row is read.
METHOD_NOT_ALLOWED = 405

VICTIM_ENDPOINT_URL = "https://public.example.com/hooks/victim"

__all__ = ["VIEW_NAMES", "sample_url"]


@dataclass
class World:
    victim: Tenant
    outsider: Tenant
    payment: Payment
    refund: Refund
    link: CheckoutSession
    export: PaymentExport
    rule: FraudRule
    endpoint: WebhookEndpoint
    delivery: WebhookDelivery
    invitation: Invitation
    key: ApiKey
    key_secret: str
    teammate_membership: Membership
    rotation: KeyRotation
    outsider_key_secret: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def build_world() -> World:
    """The victim's rows (see the module docstring). Needs the ``dns`` fixture (webhook endpoint)."""
    victim = make_tenant("victim")
    outsider = make_tenant("outsider")
    issued_endpoint = webhook_endpoint_create(
        actor=victim.owner, merchant=victim.merchant, url=VICTIM_ENDPOINT_URL
    )
    payment = succeeded_payment(victim, amount=5000)  # also queues a delivery to the endpoint
    # Flagged by a fraud rule after it succeeded: waiting for the team's review decision.
    Payment.objects.filter(pk=payment.pk).update(review_status=Payment.Review.PENDING)
    # The endpoint's delivery of that payment gave up: the kind a team resends by hand.
    WebhookDelivery.objects.filter(endpoint=issued_endpoint.endpoint).update(
        status=WebhookDelivery.Status.FAILED
    )
    refund = services.refund_create(actor=victim.owner, payment=payment, amount=100, reason="Damaged box")
    link = services.checkout_session_create(
        actor=victim.owner,
        merchant=victim.merchant,
        amount=1200,
        currency="EUR",
        description="Open link",
        customer_email="buyer2@example.com",
    )
    export = exports.payment_export_create(
        actor=victim.owner, merchant=victim.merchant, role=Role.OWNER, raw_filters={}
    )
    exports.payment_export_run(export_pk=export.pk)  # ready to download: full emails, the owner's
    export.refresh_from_db()
    rule = add_rule(victim, "max_amount", "block", label="Big tickets", amount=90000, currency="EUR")
    invitation = account_services.invitation_create(
        actor=victim.owner, merchant=victim.merchant, email="new.hire@victim.example.com", role=Role.ANALYST
    ).invitation
    issued_key = api_key_create(actor=victim.owner, merchant=victim.merchant, name="backend", scope="write")
    outsider_key = api_key_create(
        actor=outsider.owner, merchant=outsider.merchant, name="theirs", scope="write"
    )
    rotation = KeyRotation.objects.create(target_kek_id="k2", total=10, done=3, started_by="sec@platform")
    world = World(
        victim=victim,
        outsider=outsider,
        payment=payment,
        refund=refund,
        link=link,
        export=export,
        rule=rule,
        endpoint=issued_endpoint.endpoint,
        delivery=WebhookDelivery.objects.filter(endpoint=issued_endpoint.endpoint).order_by("pk").first(),
        invitation=invitation,
        key=issued_key.key,
        key_secret=issued_key.secret,
        teammate_membership=Membership.objects.get(user=victim.teammate, merchant=victim.merchant),
        rotation=rotation,
        outsider_key_secret=outsider_key.secret,
    )
    for role in Role.values:
        member(world, role)
    return world


@contextmanager
def module_world(django_db_blocker: Any) -> Iterator[World]:
    """One world for a whole test module, built in a transaction rolled back at its end.

    Each test still runs in its own savepoint (pytest-django), so whatever a test changes is
    undone before the next one; tests must not keep Python objects they changed.
    """
    with django_db_blocker.unblock(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", FakeDNS({"public.example.com": "93.184.216.34"}))
        with transaction.atomic():
            world = build_world()
            world.extra["admin"] = make_user("root@platform.example.com", is_staff=True, is_superuser=True)
            yield world
            transaction.set_rollback(True)


@pytest.fixture(scope="module", name="shared_world")
def shared_world_fixture(django_db_setup, django_db_blocker) -> Iterator[World]:  # noqa: ANN001
    """One victim world for the module; each test's changes are rolled back to its savepoint."""
    with module_world(django_db_blocker) as world:
        yield world


@pytest.fixture(name="world")
def world_fixture(shared_world: World, db: None, dns) -> World:  # noqa: ANN001 - dns: the importing module's fixture
    """The module's victim world, with made-up DNS (import ``shared_world_fixture`` and this one)."""
    return shared_world


def member(world: World, role: str) -> User:
    """A person on the victim's team with ``role`` (one per role, made on first use)."""
    users = world.extra.setdefault("members", {})
    if role not in users:
        user = make_user(f"{role}.member@victim.example.com")
        Membership.objects.create(user=user, merchant=world.victim.merchant, role=role)
        users[role] = user
    return users[role]


def verified(user: User, **client_kwargs: Any) -> Client:
    return login_verified(Client(**client_kwargs), user)


# --- Filling each object URL with the victim's rows -------------------------------------------------


def _delivery_ids(w: World) -> dict[str, str]:
    return {"public_id": w.endpoint.public_id, "delivery_id": w.delivery.public_id}


# URL name -> the victim's ids for it. A URL with ids that is neither here nor in NOT_BUILT (or the
# admin, filled from its model registry below) fails test_every_object_url_is_built_or_listed.
OBJECT_URLS: dict[str, Callable[[World], dict[str, Any]]] = {
    "team_member_role": lambda w: {"membership_id": w.teammate_membership.pk},
    "team_member_remove": lambda w: {"membership_id": w.teammate_membership.pk},
    "invitation_revoke": lambda w: {"public_id": w.invitation.public_id},
    "api_key_rotate": lambda w: {"public_id": w.key.public_id},
    "api_key_revoke": lambda w: {"public_id": w.key.public_id},
    "payment_detail": lambda w: {"public_id": w.payment.public_id},
    "payment_refund": lambda w: {"public_id": w.payment.public_id},
    "payment_review_decide": lambda w: {"public_id": w.payment.public_id},
    "payment_link_detail": lambda w: {"public_id": w.link.public_id},
    "payment_export_detail": lambda w: {"public_id": w.export.public_id},
    "payment_export_progress": lambda w: {"public_id": w.export.public_id},
    "payment_export_download": lambda w: {"public_id": w.export.public_id},
    "payments_fraud_rule_edit": lambda w: {"public_id": w.rule.public_id},
    "payments_fraud_rule_toggle": lambda w: {"public_id": w.rule.public_id},
    "payments_fraud_rule_delete": lambda w: {"public_id": w.rule.public_id},
    "webhook_endpoint_detail": lambda w: {"public_id": w.endpoint.public_id},
    "webhook_endpoint_status": lambda w: {"public_id": w.endpoint.public_id},
    "webhook_endpoint_delete": lambda w: {"public_id": w.endpoint.public_id},
    "webhook_delivery_detail": lambda w: {
        "public_id": w.endpoint.public_id,
        "delivery_id": w.delivery.public_id,
    },
    "webhook_delivery_resend": lambda w: {
        "public_id": w.endpoint.public_id,
        "delivery_id": w.delivery.public_id,
    },
    "key_rotation_progress": lambda w: {"public_id": w.rotation.public_id},
    "api_checkout_session": lambda w: {"public_id": w.link.public_id},
    "api_checkout_session_expire": lambda w: {"public_id": w.link.public_id},
    "api_payment": lambda w: {"public_id": w.payment.public_id},
    "api_refund": lambda w: {"public_id": w.refund.public_id},
}

# URLs with ids that are not a merchant's rows, and why; each is attacked elsewhere.
NOT_BUILT: dict[str, str] = {
    "account_reset_password_from_key": "public: the id is a single-use reset token (a credential, not a row)",
    "invitation_accept": "public: the id is the invitation's secret token (a credential, not a row)",
    "checkout_pay": "public by design: the link id is the customer's capability (test_attack_checkout)",
    "checkout_return": "public by design: the customer's return from 3DS (test_attack_checkout)",
    "checkout_done": "public by design: the customer's receipt (test_attack_checkout)",
    "checkout_simulated_3ds": "public by design: the simulated bank's challenge (test_attack_checkout)",
    "payments_fraud_rule_create": "the id is a kind of rule, not a row (test_lower_roles_cannot_act)",
}

# Merchant URLs that answer a POST like a GET (a page, no action); asserted to change nothing.
POST_READS = frozenset(
    {
        "payment_detail",
        "webhook_endpoint_detail",
        "webhook_delivery_detail",
        "developers",
        "payments_disputes",
        "payments_fraud_rules",
        "payments_review_queue",
        "webhook_endpoints",
    }
)

# The body that makes each state-changing object URL act, so a refusal is a refusal of the act
# itself and not of a malformed form (test_the_attack_bodies_act_for_the_owner proves each works).
POST_BODIES: dict[str, Callable[[World], dict[str, Any]]] = {
    "team_member_role": lambda w: {"role": Role.ADMIN},
    "team_member_remove": lambda w: {},
    "invitation_revoke": lambda w: {},
    "api_key_rotate": lambda w: {},
    "api_key_revoke": lambda w: {},
    "payment_refund": lambda w: {"refund_id": new_public_id("re"), "amount": "1.00", "reason": "attack"},
    "payment_review_decide": lambda w: {"decision": "keep", "reason": "attack"},
    "payment_link_detail": lambda w: {},
    "payments_fraud_rule_edit": lambda w: {
        "label": "Renamed",
        "action": "review",
        "enabled": "on",
        "amount": "1.00",
        "currency": "EUR",
    },
    "payments_fraud_rule_toggle": lambda w: {"enabled": "0"},
    "payments_fraud_rule_delete": lambda w: {},
    "webhook_endpoint_status": lambda w: {"enabled": "0"},
    "webhook_endpoint_delete": lambda w: {},
    "webhook_delivery_resend": lambda w: {},
    "api_checkout_session_expire": lambda w: {},
}


def is_admin(view_name: str) -> bool:
    return view_name.startswith("admin:")


def object_view_names() -> list[str]:
    return [n for n in VIEW_NAMES if _params_for(n)]


def _admin_model(view_name: str) -> type[models.Model] | None:
    name = view_name.split(":", 1)[1]
    for model in admin.site._registry:
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        if name.startswith(prefix):
            return model
    return None


def _victim_row(world: World, model: type[models.Model]) -> models.Model | None:
    """The victim's row of ``model`` (or a platform row, for tables no merchant owns)."""
    if model is Merchant:
        return world.victim.merchant
    if issubclass(model, User):
        return world.victim.owner
    if model is EncryptedTOTPDevice:
        return EncryptedTOTPDevice.objects.filter(user=world.victim.owner).first()
    if any(f.name == "merchant" for f in model._meta.get_fields()):
        return model._default_manager.filter(merchant=world.victim.merchant).first()
    return model._default_manager.first()


def admin_kwargs(world: World, view_name: str) -> dict[str, Any]:
    params = _params_for(view_name)
    if view_name == "admin:app_list":
        return {"app_label": "accounts"}
    if view_name == "admin:view_on_site":
        merchant = world.victim.merchant
        return {"content_type_id": ContentType.objects.get_for_model(Merchant).pk, "object_id": merchant.pk}
    if view_name == "admin:auth_user_password_change":
        return {"id": world.victim.owner.pk}
    model = _admin_model(view_name)
    row = _victim_row(world, model) if model is not None else None
    pk = row.pk if row is not None else 1
    return dict.fromkeys(params, pk)


def url_for(world: World, view_name: str) -> str:
    """The URL of ``view_name`` naming the victim's row (a sample URL when it has no ids)."""
    if not _params_for(view_name):
        return reverse(view_name)
    if view_name in OBJECT_URLS:
        return reverse(view_name, kwargs=OBJECT_URLS[view_name](world))
    if is_admin(view_name):
        return reverse(view_name, kwargs=admin_kwargs(world, view_name))
    return sample_url(view_name)


# --- "Nothing changed" -------------------------------------------------------------------------------

OUR_APPS = ("accounts", "payments", "security", "kyc", "compliance", "otp_totp", "otp_static")
# Columns that move without anyone acting on the row (bookkeeping of a sign-in or a key's use).
VOLATILE = {"last_login", "last_used_at", "last_used_ip", "last_t", "throttling_failure_timestamp"}
# The audit chain's head moves with every event anyone writes; the events themselves are compared.
SKIPPED_TABLES = {"security.AuditChainHead"}
# Platform tables that others' lawful work adds rows to (a data key per new encrypted subject):
# only the rows that were there before are compared.
GROWS_WITH_OTHERS = {"security.DataKey"}
# Audit events that record a refusal (the attempt, not a change): the only rows an attack may add.
RECORDED_REFUSALS = frozenset({"payments.export_download_refused"})


def _merchant_path(model: type[models.Model]) -> str | None:
    """The lookup from ``model`` to its merchant (``merchant`` or one hop away), if any."""
    fields = {f.name: f for f in model._meta.get_fields()}
    merchant = fields.get("merchant")
    if merchant is not None and getattr(merchant, "related_model", None) is Merchant:
        return "merchant"
    if model is Merchant:
        return "pk"
    for f in model._meta.concrete_fields:
        if isinstance(f, models.ForeignKey) and f.related_model is not Merchant:
            related = {g.name: g for g in f.related_model._meta.get_fields()}
            target = related.get("merchant")
            if target is not None and getattr(target, "related_model", None) is Merchant:
                return f"{f.name}__merchant"
    return None


def snapshot(world: World) -> dict[str, list[dict[str, Any]]]:
    """Every row of the victim's, and every platform row, as plain values."""
    victim = world.victim.merchant
    people = list(Membership.objects.filter(merchant=victim).values_list("user_id", flat=True))
    state: dict[str, list[dict[str, Any]]] = {}
    people_ids = list(User.objects.filter(pk__in=people).values_list("public_id", flat=True))
    for model in apps.get_models():
        if model._meta.app_label not in OUR_APPS or not model._meta.managed:
            continue
        if model._meta.label in SKIPPED_TABLES:
            continue
        manager = model._default_manager
        path = _merchant_path(model)
        if model is AuditEvent:
            rows = manager.filter(Q(merchant_id=victim.public_id) | Q(actor_id__in=people_ids))
        elif path == "pk":
            rows = manager.filter(pk=victim.pk)
        elif path is not None:
            rows = manager.filter(**{path: victim})
        elif issubclass(model, User):
            rows = manager.filter(pk__in=people)
        elif any(f.name == "user" for f in model._meta.concrete_fields):
            rows = manager.filter(user_id__in=people)
        else:
            rows = manager.all()
        state[model._meta.label] = [
            {k: _plain(v) for k, v in row.items() if k not in VOLATILE}
            for row in rows.order_by("pk").values()
        ]
    return state


def _plain(value: Any) -> Any:
    """A value that compares by content (an encrypted column compares by its stored token)."""
    return ("sealed", value.token, value.erased) if isinstance(value, Sealed) else value


def changed_tables(before: dict[str, list], after: dict[str, list]) -> list[str]:
    changed = []
    for label in sorted(before.keys() | after.keys()):
        old, new = before.get(label, []), after.get(label, [])
        if label in GROWS_WITH_OTHERS:
            if any(row not in new for row in old):
                changed.append(label)
        elif label == AuditEvent._meta.label:
            added = [row for row in new if row not in old]
            if any(row not in new for row in old) or any(r["action"] not in RECORDED_REFUSALS for r in added):
                changed.append(label)
        elif old != new:
            changed.append(label)
    return changed


# --- Redirects -------------------------------------------------------------------------------------

OFF_SITE_TARGETS = [
    "https://evil.example/",
    "//evil.example",
    "/\\evil.example",
    "https:evil.example",
    "javascript:alert(1)",
]


def stays_on_site(location: str) -> bool:
    """Whether a redirect's ``Location`` keeps the browser on this site."""
    if location.startswith(("//", "/\\", "\\")):
        return False
    if not url_has_allowed_host_and_scheme(location, allowed_hosts={"testserver"}):
        return False
    parsed = urlparse(location)
    return parsed.scheme in ("", "http", "https") and parsed.netloc in ("", "testserver")
