"""A gateway event moves only the payment it belongs to.

Stripe sends every connected account's events to our one endpoint, signed with our one
secret; Braintree sends every merchant account's. A signature therefore proves only that the
gateway sent an event, not that the event is about the payment it names. The attack: a
merchant with a connected account of their own makes a PaymentIntent (1 USD, say) whose
metadata names a victim's ``pay_...`` id and pays it; the signed ``payment_intent.succeeded``
used to move the victim's payment to succeeded with the wrong amount, and the victim's real
outcome was then ignored (succeeded is final). Refunds and disputes took the same path.

Each test drives the attack as the attacker would (their own objects at the fake Stripe or
Braintree API, the gateway's signed event on our real endpoint, the apply task), then checks
what the victim would see: their payment unchanged, the event held as mismatched, audited
and listed for platform admins, and the real event still applied afterwards.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import pytest
import stripe
from braintree import BraintreeGateway as SdkGateway
from django.test import Client

from fintech_portal.webhook_wsgi import webhook_fast_path
from payments.models import Dispute, Payment, PaymentEvent, PaymentSettings, Refund, WebhookEvent
from payments.services import webhook_apply, webhook_apply_batch
from security.models import AuditEvent
from tests.conftest import login_verified, make_user
from tests.fakes.braintree_fake import BraintreeFake
from tests.fakes.stripe_fake import StripeFake
from tests.payments import braintree_notifications
from tests.payments.conftest import (
    STRIPE_SECRET_KEY,
    WEBHOOK_SECRET,
    make_braintree_gateway,
)
from tests.payments.helpers import (
    deliver_stripe_webhook,
    latest_payment,
    new_session,
    pay,
    use_braintree,
    use_stripe,
)
from tests.payments.test_webhook_wsgi import CountingDjango, call

pytestmark = pytest.mark.django_db

VICTIM_ACCOUNT = "acct_" + "victim1"
ATTACKER_ACCOUNT = "acct_" + "attacker1"
MISMATCHED = WebhookEvent.Status.MISMATCHED
APPLIED = WebhookEvent.Status.APPLIED


def snapshot(payment: Payment) -> dict[str, Any]:
    """Everything a merchant sees of a payment: its state, amounts and history, refunds, disputes."""
    payment.refresh_from_db()
    return {
        "status": payment.status,
        "amounts": (payment.amount_captured, payment.amount_refunded, payment.amount_disputed),
        "ids": (payment.gateway_payment_id, payment.merchant_account, payment.currency),
        "succeeded_at": payment.succeeded_at,
        "history": list(PaymentEvent.objects.filter(payment=payment).values_list("kind", "to_status")),
        "refunds": list(Refund.objects.filter(payment=payment).values_list("amount", "status")),
        "disputes": list(Dispute.objects.filter(payment=payment).values_list("amount", "status")),
    }


def assert_held(row: WebhookEvent, victim: Payment) -> None:
    """The event is stored as mismatched, names the victim's payment in its reason, and is audited
    against the victim's merchant."""
    row.refresh_from_db()
    assert row.status == MISMATCHED, row.last_error
    assert victim.public_id in row.last_error
    assert row.merchant_id == victim.merchant_id
    audit = AuditEvent.objects.get(action="webhook_event.mismatched", target_id=row.public_id)
    assert audit.merchant_id == victim.merchant.public_id
    assert audit.details["event_id"] == row.event_id and audit.details["reason"]


# --- Stripe: two merchants, each with a connected account ------------------------------------------


@dataclass
class StripeWorld:
    fake: StripeFake
    victim: Any  # tests.conftest.Tenant
    attacker: Any
    run_on_commit: Any

    @property
    def api(self) -> stripe.StripeClient:
        """Stripe's API as a merchant (or Stripe.js in a customer's browser) uses it directly."""
        return stripe.StripeClient(
            STRIPE_SECRET_KEY, base_addresses={"api": self.fake.url}, max_network_retries=0
        )

    def opened_payment(self, amount: int = 2500) -> tuple[Any, Payment]:
        """The victim's customer opens the checkout page: a PaymentIntent in the victim's account."""
        session = new_session(self.victim, amount=amount, currency="EUR")
        assert Client().get(f"/pay/{session.public_id}/").status_code == 200
        payment = latest_payment(session)
        assert payment.gateway_payment_id and payment.merchant_account == VICTIM_ACCOUNT
        return session, payment

    def paid_in_browser(self, payment: Payment) -> dict[str, Any]:
        """Stripe.js confirms the victim's PaymentIntent at Stripe; we learn of it by webhook."""
        self.api.v1.payment_intents.confirm(
            payment.gateway_payment_id,
            {"payment_method": "pm_card_visa", "return_url": "https://shop.example.com/back"},
            {"stripe_account": VICTIM_ACCOUNT},
        )
        return self.intent(payment.gateway_payment_id, VICTIM_ACCOUNT)

    def intent(self, intent_id: str, account: str) -> dict[str, Any]:
        return copy.deepcopy(self.fake.intent(intent_id, account=account))

    def foreign_intent(
        self, victim: Payment, *, account: str, amount: int = 100, currency: str = "usd"
    ) -> dict:
        """A PaymentIntent the attacker makes and pays in ``account``, its metadata naming ``victim``."""
        created = self.api.v1.payment_intents.create(
            {"amount": amount, "currency": currency, "metadata": {"payment_id": victim.public_id}},
            {"stripe_account": account},
        )
        self.api.v1.payment_intents.confirm(
            created.id,
            {"payment_method": "pm_card_visa", "return_url": "https://attacker.example.com/"},
            {"stripe_account": account},
        )
        return self.intent(created.id, account)

    def signed(
        self, event_type: str, obj: dict, *, account: str | None, livemode: bool = False
    ) -> tuple[str, str]:
        event = self.fake.build_event(event_type, copy.deepcopy(obj), account=account)
        event["livemode"] = livemode
        payload = json.dumps(event)
        return payload, stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)

    def send(
        self, event_type: str, obj: dict, *, account: str | None, livemode: bool = False, apply: bool = True
    ) -> WebhookEvent:
        """Stripe POSTs the signed event to our endpoint; the drain applies it (unless ``apply`` is off)."""
        payload, signature = self.signed(event_type, obj, account=account, livemode=livemode)
        deliver_stripe_webhook(self.run_on_commit, payload, signature, apply=apply)
        return WebhookEvent.objects.get(event_id=json.loads(payload)["id"])


@pytest.fixture
def sworld(settings, stripe_fake, tenant, outsider, django_capture_on_commit_callbacks) -> StripeWorld:
    use_stripe(settings, stripe_fake)
    for who, account in ((tenant, VICTIM_ACCOUNT), (outsider, ATTACKER_ACCOUNT)):
        PaymentSettings.objects.update_or_create(
            merchant=who.merchant, defaults={"gateway": "stripe", "stripe_account": account}
        )
    return StripeWorld(stripe_fake, tenant, outsider, django_capture_on_commit_callbacks)


def test_the_attackers_own_intent_naming_the_victims_payment_moves_nothing_and_the_real_event_applies(
    sworld: StripeWorld,
) -> None:
    _session, victim = sworld.opened_payment()
    before = snapshot(victim)
    theirs = sworld.foreign_intent(victim, account=ATTACKER_ACCOUNT, amount=100, currency="usd")

    row = sworld.send("payment_intent.succeeded", theirs, account=ATTACKER_ACCOUNT)

    assert snapshot(victim) == before
    assert_held(row, victim)
    assert ATTACKER_ACCOUNT in row.last_error

    # The customer pays for real; Stripe's own event for the victim's intent still applies.
    real = sworld.send("payment_intent.succeeded", sworld.paid_in_browser(victim), account=VICTIM_ACCOUNT)
    assert row.status == MISMATCHED and real.status == APPLIED
    victim.refresh_from_db()
    assert (victim.status, victim.amount_captured, victim.currency) == ("succeeded", 2500, "EUR")


@pytest.mark.parametrize("path", ["batch", "single"])
@pytest.mark.parametrize(
    ("account", "livemode"),
    [(ATTACKER_ACCOUNT, False), (None, False), (VICTIM_ACCOUNT, True)],
    ids=["another_account", "the_platform_account", "live_mode"],
)
def test_an_event_for_the_victims_own_intent_from_another_account_or_mode_is_held(
    sworld: StripeWorld, path: str, account: str | None, livemode: bool
) -> None:
    _session, victim = sworld.opened_payment()
    intent = sworld.paid_in_browser(victim)
    before = snapshot(victim)

    row = sworld.send("payment_intent.succeeded", intent, account=account, livemode=livemode, apply=False)
    if path == "batch":
        assert webhook_apply_batch(webhook_pks=[row.pk]).done == [row.pk]
    else:
        assert webhook_apply(webhook_pk=row.pk) == MISMATCHED

    assert snapshot(victim) == before
    assert_held(row, victim)
    assert webhook_apply(webhook_pk=row.pk) == MISMATCHED  # applying again changes nothing

    real = sworld.send("payment_intent.succeeded", intent, account=VICTIM_ACCOUNT)
    assert real.status == APPLIED
    victim.refresh_from_db()
    assert (victim.status, victim.amount_captured) == ("succeeded", 2500)


@pytest.mark.parametrize(
    ("amount", "currency"), [(100, "eur"), (2500, "usd"), (250000, "eur")], ids=["less", "currency", "more"]
)
def test_a_payment_becomes_succeeded_only_for_its_own_amount_and_currency(
    sworld: StripeWorld, amount: int, currency: str
) -> None:
    _session, victim = sworld.opened_payment()
    intent = sworld.paid_in_browser(victim)
    before = snapshot(victim)
    claimed = intent | {"amount": amount, "amount_received": amount, "currency": currency}

    row = sworld.send("payment_intent.succeeded", claimed, account=VICTIM_ACCOUNT)

    assert snapshot(victim) == before
    assert_held(row, victim)
    assert sworld.send("payment_intent.succeeded", intent, account=VICTIM_ACCOUNT).status == APPLIED
    victim.refresh_from_db()
    assert (victim.status, victim.amount_captured, victim.currency) == ("succeeded", 2500, "EUR")


def test_a_metadata_only_event_is_checked_by_fetching_our_own_intent_by_its_stored_id(
    sworld: StripeWorld,
) -> None:
    _session, victim = sworld.opened_payment()
    before = snapshot(victim)
    # Another intent in the victim's own account, for another amount and currency, naming the payment.
    other = sworld.foreign_intent(victim, account=VICTIM_ACCOUNT, amount=100, currency="usd")
    sworld.fake.requests.clear()

    row = sworld.send("payment_intent.succeeded", other, account=VICTIM_ACCOUNT)

    fetched = [
        (r.method, r.path, r.header("stripe-account"))
        for r in sworld.fake.requests
        if r.path.startswith("/v1/payment_intents")
    ]
    assert fetched == [("GET", f"/v1/payment_intents/{victim.gateway_payment_id}", VICTIM_ACCOUNT)]
    assert snapshot(victim) == before  # our intent is still unpaid: nothing moved
    assert_held(row, victim)
    assert other["id"] in row.last_error and victim.gateway_payment_id in row.last_error


def test_a_metadata_only_event_moves_the_payment_only_as_far_as_our_own_intent_went(
    sworld: StripeWorld,
) -> None:
    _session, victim = sworld.opened_payment()
    sworld.paid_in_browser(victim)  # the customer paid; no event for it has arrived yet
    other = sworld.foreign_intent(victim, account=VICTIM_ACCOUNT, amount=100, currency="usd")

    row = sworld.send("payment_intent.succeeded", other, account=VICTIM_ACCOUNT)

    assert_held(row, victim)
    victim.refresh_from_db()
    # What our own intent says, fetched by its id: our amount and currency, not the event's.
    assert (victim.status, victim.amount_captured, victim.currency) == ("succeeded", 2500, "EUR")
    assert victim.gateway_payment_id != other["id"]


@pytest.mark.parametrize(
    "account", [ATTACKER_ACCOUNT, VICTIM_ACCOUNT], ids=["another_account", "same_account"]
)
def test_refund_events_for_another_intent_naming_the_victims_payment_refund_nothing(
    sworld: StripeWorld, account: str
) -> None:
    session, victim = sworld.opened_payment()
    assert pay(Client(), session, "pm_card_visa").status_code == 302
    before = snapshot(victim)
    assert before["status"] == "succeeded"
    theirs = sworld.foreign_intent(victim, account=account, amount=2500, currency="eur")
    refund = sworld.api.v1.refunds.create(
        {"payment_intent": theirs["id"], "metadata": {"payment_id": victim.public_id, "refund_id": "re_x"}},
        {"stripe_account": account},
    ).to_dict()
    charge = copy.deepcopy(sworld.fake.account(account).charges[theirs["latest_charge"]])
    charge["metadata"] = {"payment_id": victim.public_id}

    rows = [
        sworld.send("refund.created", refund, account=account),
        sworld.send("charge.refunded", charge, account=account),
    ]

    assert snapshot(victim) == before
    for row in rows:
        assert_held(row, victim)

    # The victim refunds in their own Stripe dashboard: that refund's event applies.
    real = sworld.api.v1.refunds.create(
        {"payment_intent": victim.gateway_payment_id, "amount": 700}, {"stripe_account": VICTIM_ACCOUNT}
    ).to_dict()
    assert sworld.send("refund.created", real, account=VICTIM_ACCOUNT).status == APPLIED
    victim.refresh_from_db()
    assert victim.amount_refunded == 700
    assert list(Refund.objects.filter(payment=victim).values_list("amount", "status")) == [(700, "succeeded")]


def _dispute(payment: Payment, **extra: Any) -> dict[str, Any]:
    return {
        "id": "dp_" + "D" * 20,
        "object": "dispute",
        "amount": 2500,
        "currency": "eur",
        "charge": "ch_" + "C" * 20,
        "payment_intent": payment.gateway_payment_id,
        "reason": "fraudulent",
        "status": "needs_response",
        "evidence_details": {"due_by": 1_890_600_000},
    } | extra


@pytest.mark.parametrize(
    ("account", "livemode", "extra"),
    [
        (ATTACKER_ACCOUNT, False, {}),
        (VICTIM_ACCOUNT, True, {}),
        (VICTIM_ACCOUNT, False, {"currency": "usd"}),
        (VICTIM_ACCOUNT, False, {"amount": 999_999}),
    ],
    ids=["another_account", "live_mode", "another_currency", "more_than_paid"],
)
def test_dispute_events_that_do_not_belong_to_the_payment_open_nothing(
    sworld: StripeWorld, account: str, livemode: bool, extra: dict
) -> None:
    session, victim = sworld.opened_payment()
    assert pay(Client(), session, "pm_card_visa").status_code == 302
    before = snapshot(victim)

    row = sworld.send("charge.dispute.created", _dispute(victim, **extra), account=account, livemode=livemode)

    assert snapshot(victim) == before
    assert_held(row, victim)
    real = sworld.send("charge.dispute.created", _dispute(victim), account=VICTIM_ACCOUNT)
    assert real.status == APPLIED
    victim.refresh_from_db()
    assert victim.amount_disputed == 2500
    assert list(Dispute.objects.filter(payment=victim).values_list("amount", "status")) == [
        (2500, "needs_response")
    ]


def test_a_dispute_event_naming_another_payments_dispute_moves_neither(sworld: StripeWorld) -> None:
    session, victim = sworld.opened_payment()
    assert pay(Client(), session, "pm_card_visa").status_code == 302
    attacker_session = new_session(sworld.attacker, amount=2500, currency="EUR")
    assert pay(Client(), attacker_session, "pm_card_visa").status_code == 302
    theirs = latest_payment(attacker_session)
    opened = sworld.send("charge.dispute.created", _dispute(theirs), account=ATTACKER_ACCOUNT)
    assert opened.status == APPLIED
    before, theirs_before = snapshot(victim), snapshot(theirs)

    # The victim's account, the victim's intent, but the attacker's dispute (now "lost").
    row = sworld.send("charge.dispute.closed", _dispute(victim, status="lost"), account=VICTIM_ACCOUNT)

    assert (snapshot(victim), snapshot(theirs)) == (before, theirs_before)
    assert_held(row, victim)


def test_the_wsgi_fast_path_stores_the_attack_and_the_drain_holds_it(sworld: StripeWorld) -> None:
    _session, victim = sworld.opened_payment()
    before = snapshot(victim)
    theirs = sworld.foreign_intent(victim, account=ATTACKER_ACCOUNT)
    payload, signature = sworld.signed("payment_intent.succeeded", theirs, account=ATTACKER_ACCOUNT)
    django_app = CountingDjango()

    with sworld.run_on_commit(execute=True):
        answer = call(
            webhook_fast_path(django_app),
            "/webhooks/stripe/",
            payload.encode(),
            headers={"Stripe-Signature": signature},
        )

    assert (answer.status, django_app.calls) == (200, 0)
    assert snapshot(victim) == before
    assert_held(WebhookEvent.objects.get(event_id=json.loads(payload)["id"]), victim)


def test_platform_admins_find_held_events_in_the_admin_filtered_by_status(sworld: StripeWorld) -> None:
    _session, victim = sworld.opened_payment()
    held = sworld.send(
        "payment_intent.succeeded",
        sworld.foreign_intent(victim, account=ATTACKER_ACCOUNT),
        account=ATTACKER_ACCOUNT,
    )
    applied = sworld.send("payment_intent.succeeded", sworld.paid_in_browser(victim), account=VICTIM_ACCOUNT)
    admin = make_user("admin@platform.example.com", is_staff=True, is_superuser=True)
    browser = login_verified(Client(), admin)

    listed = browser.get("/admin/payments/webhookevent/?status__exact=mismatched")

    assert listed.status_code == 200
    page = listed.content.decode()
    assert held.public_id in page and victim.public_id in page
    assert applied.public_id not in page
    detail = browser.get(f"/admin/payments/webhookevent/{held.pk}/change/")
    assert detail.status_code == 200 and ATTACKER_ACCOUNT in detail.content.decode()


def test_the_public_result_page_prints_no_payment_id(sworld: StripeWorld) -> None:
    session, victim = sworld.opened_payment()
    browser = Client()
    assert pay(browser, session, "pm_card_visa").status_code == 302

    page = browser.get(f"/pay/{session.public_id}/done/").content.decode()

    assert "Payment successful" in page
    assert victim.public_id not in page
    assert session.public_id in page  # the reference the customer already holds, in the page's address


# --- Braintree: merchant accounts of one gateway ----------------------------------------------------


@dataclass
class BraintreeWorld:
    fake: BraintreeFake
    sdk: SdkGateway
    victim: Any
    run_on_commit: Any

    def paid_payment(self, amount: int = 25000) -> Payment:
        session = new_session(self.victim, amount=amount, currency="USD")
        response = Client().post(f"/pay/{session.public_id}/", {"payment_method_nonce": "fake-valid-nonce"})
        assert response.status_code == 302, response.content
        payment = latest_payment(session)
        assert (payment.status, payment.merchant_account) == ("succeeded", "fake_usd")
        return payment

    def send(self, body: bytes) -> WebhookEvent:
        with self.run_on_commit(execute=True):
            response = Client().post(
                "/webhooks/braintree/", data=body, content_type="application/x-www-form-urlencoded"
            )
        assert response.status_code == 200, response.content
        return WebhookEvent.objects.order_by("-id").first()


@pytest.fixture
def bworld(settings, braintree_fake, tenant, django_capture_on_commit_callbacks) -> BraintreeWorld:
    use_braintree(settings, braintree_fake, tenant)
    sdk = make_braintree_gateway(braintree_fake).sdk
    return BraintreeWorld(braintree_fake, sdk, tenant, django_capture_on_commit_callbacks)


def _bt(world: BraintreeWorld, kind: str, object_id: str, **kwargs: Any) -> bytes:
    return braintree_notifications.notification(world.sdk, kind, object_id, **kwargs)


def test_a_braintree_dispute_from_another_merchant_account_opens_nothing(bworld: BraintreeWorld) -> None:
    victim = bworld.paid_payment()
    before = snapshot(victim)

    row = bworld.send(_bt(bworld, "dispute_opened", victim.gateway_payment_id, merchant_account="fake_eur"))

    assert snapshot(victim) == before
    assert_held(row, victim)
    assert "fake_eur" in row.last_error
    real = bworld.send(_bt(bworld, "dispute_opened", victim.gateway_payment_id, merchant_account="fake_usd"))
    assert real.status == APPLIED
    assert list(Dispute.objects.filter(payment=victim).values_list("amount", "status")) == [
        (10000, "needs_response")
    ]


def test_a_braintree_transaction_notification_from_another_merchant_account_is_held(
    bworld: BraintreeWorld,
) -> None:
    victim = bworld.paid_payment()
    bworld.fake.settle(victim.gateway_payment_id)
    before = snapshot(victim)

    row = bworld.send(
        _bt(bworld, "transaction_settled", victim.gateway_payment_id, merchant_account="fake_eur")
    )

    assert snapshot(victim) == before
    assert_held(row, victim)
    assert bworld.send(_bt(bworld, "transaction_settled", victim.gateway_payment_id)).status == APPLIED


@pytest.mark.parametrize(
    "merchant_account", ["fake_eur", "fake_usd"], ids=["another_account", "same_account"]
)
def test_a_braintree_transaction_of_someone_else_naming_the_victims_order_id_is_held(
    bworld: BraintreeWorld, merchant_account: str
) -> None:
    victim = bworld.paid_payment()
    before = snapshot(victim)
    bworld.fake.requests.clear()

    row = bworld.send(
        _bt(
            bworld,
            "transaction_settled",
            "their_txn",
            merchant_account=merchant_account,
            order_id=victim.public_id,
        )
    )

    assert snapshot(victim) == before
    assert_held(row, victim)
    if merchant_account == "fake_usd":  # the same account: our own sale is fetched by its id
        paths = [r.path for r in bworld.fake.requests]
        assert any(p.endswith(f"/transactions/{victim.gateway_payment_id}") for p in paths), paths
        assert not any("their_txn" in p for p in paths)


def test_a_braintree_sale_the_gateway_reports_in_another_merchant_account_is_held(
    bworld: BraintreeWorld,
) -> None:
    victim = bworld.paid_payment()
    sale = bworld.fake.transaction(victim.gateway_payment_id)
    sale["merchant_account_id"] = "fake_eur"
    bworld.fake.settle(victim.gateway_payment_id)
    before = snapshot(victim)

    # A notification that names no merchant account: what Braintree's record says decides.
    row = bworld.send(_bt(bworld, "transaction_settled", victim.gateway_payment_id, merchant_account=None))

    assert snapshot(victim) == before
    assert_held(row, victim)
