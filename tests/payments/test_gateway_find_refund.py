"""``find_refund`` / ``fetch_refund``: every gateway finds a refund by our id, or says it has none.

A refund whose answer was lost is looked for this way before anything else is sent
(``payments.services.refund_settle``).
"""

from __future__ import annotations

from collections.abc import Callable

from payments.gateways.base import PaymentRef, PaymentRequest
from payments.gateways.braintree import BraintreeGateway
from payments.gateways.simulated import SimulatedGateway
from payments.gateways.stripe import StripeGateway
from tests.fakes.braintree_fake import BraintreeFake
from tests.fakes.stripe_fake import StripeFake
from tests.payments.gateway_helpers import paid_ref, ref_for

MakeRequest = Callable[..., PaymentRequest]


def test_stripe_finds_a_refund_by_our_id_across_pages_of_refunds(
    stripe_gateway: StripeGateway, stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    ref = paid_ref(stripe_gateway, payment_request(amount=50_000))
    for n in range(120):  # more than one page of 100
        stripe_gateway.refund_payment(ref, refund_id=f"re_{n}", amount=100)

    found = stripe_gateway.find_refund(ref, refund_id="re_0")  # the oldest: on the second page

    assert found is not None
    assert (found.refund_id, found.amount, found.status) == ("re_0", 100, "succeeded")
    assert stripe_gateway.fetch_refund(ref, found.gateway_refund_id) == found
    assert stripe_gateway.find_refund(ref, refund_id="re_never") is None
    pages = [r for r in stripe_fake.requests if r.method == "GET" and r.path == "/v1/refunds"]
    assert [r.params.get("starting_after") is not None for r in pages] == [False, True, False, True]


def test_braintree_finds_a_refund_among_the_sales_credits(
    braintree_gateway: BraintreeGateway, braintree_fake: BraintreeFake, payment_request: MakeRequest
) -> None:
    request = payment_request(currency="USD", merchant_account="fake_usd", amount=5000)
    paid = braintree_gateway.confirm_payment(request, payment_method="fake-valid-nonce")
    braintree_fake.settle(paid.gateway_payment_id)
    ref = ref_for(request, paid.gateway_payment_id)
    braintree_gateway.refund_payment(ref, refund_id="re_first", amount=1000)
    made = braintree_gateway.refund_payment(ref, refund_id="re_second", amount=1500)

    found = braintree_gateway.find_refund(ref, refund_id="re_second")

    assert found is not None
    assert (found.gateway_refund_id, found.refund_id, found.amount) == (
        made.gateway_refund_id,
        "re_second",
        1500,
    )
    assert braintree_gateway.find_refund(ref, refund_id="re_never") is None


def test_braintree_finds_a_refund_made_by_voiding_the_unsettled_sale(
    braintree_gateway: BraintreeGateway, payment_request: MakeRequest
) -> None:
    request = payment_request(currency="USD", merchant_account="fake_usd", amount=5000)
    paid = braintree_gateway.confirm_payment(request, payment_method="fake-valid-nonce")
    ref: PaymentRef = ref_for(request, paid.gateway_payment_id)
    assert braintree_gateway.find_refund(ref, refund_id="re_void") is None
    braintree_gateway.refund_payment(ref, refund_id="re_void")  # not settled yet: voided

    found = braintree_gateway.find_refund(ref, refund_id="re_void")

    assert found is not None
    assert (found.method, found.status, found.amount) == ("void", "succeeded", 5000)
    assert braintree_gateway.fetch_refund(ref, found.gateway_refund_id).status == "succeeded"


def test_simulated_finds_a_refund_by_our_id(
    simulated_gateway: SimulatedGateway, payment_request: MakeRequest
) -> None:
    ref = paid_ref(simulated_gateway, payment_request())
    made = simulated_gateway.refund_payment(ref, refund_id="re_sim", amount=700)

    assert simulated_gateway.find_refund(ref, refund_id="re_sim") == made
    assert simulated_gateway.fetch_refund(ref, made.gateway_refund_id) == made
    assert simulated_gateway.find_refund(ref, refund_id="re_other") is None


def test_braintree_finds_the_sale_that_went_through_by_our_payment_id(
    braintree_gateway: BraintreeGateway, payment_request: MakeRequest
) -> None:
    request = payment_request(currency="USD", merchant_account="fake_usd", amount=5000)
    assert braintree_gateway.find_payment(request, gateway_payment_id=None) is None
    declined = braintree_gateway.confirm_payment(
        request, payment_method="fake-processor-declined-visa-nonce", attempt=1
    )
    paid = braintree_gateway.confirm_payment(request, payment_method="fake-valid-nonce", attempt=2)
    assert declined.gateway_payment_id != paid.gateway_payment_id

    found = braintree_gateway.find_payment(request, gateway_payment_id=declined.gateway_payment_id)

    assert found is not None
    assert (found.gateway_payment_id, found.status, found.amount) == (
        paid.gateway_payment_id,
        "succeeded",
        5000,
    )
