"""The registry picks gateways from settings; the settings fail loudly when inconsistent."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import override_settings

from payments.gateways import registry
from payments.gateways.base import PaymentGateway, PaymentRequest
from payments.gateways.braintree import BraintreeGateway
from payments.gateways.simulated import SimulatedGateway
from payments.gateways.stripe import StripeGateway
from security.errors import ApplicationError
from tests.fakes.braintree_fake import BraintreeFake
from tests.fakes.stripe_fake import StripeFake
from tests.payments.conftest import STRIPE_PUBLISHABLE_KEY, STRIPE_SECRET_KEY, WEBHOOK_SECRET

MakeRequest = Callable[..., PaymentRequest]
BASE_DIR = Path(__file__).resolve().parents[2]

NO_GATEWAYS = {
    "STRIPE_SECRET_KEY": "",
    "STRIPE_PUBLISHABLE_KEY": "",
    "STRIPE_WEBHOOK_SECRET": "",
    "STRIPE_API_BASE": "",
    "BRAINTREE_MERCHANT_ID": "",
    "BRAINTREE_PUBLIC_KEY": "",
    "BRAINTREE_PRIVATE_KEY": "",
    "BRAINTREE_API_URL": "",
    "BRAINTREE_ENVIRONMENT": "sandbox",
    "PAYMENTS_SIMULATED_GATEWAY": False,
}
STRIPE = {
    **NO_GATEWAYS,
    "STRIPE_SECRET_KEY": STRIPE_SECRET_KEY,
    "STRIPE_PUBLISHABLE_KEY": STRIPE_PUBLISHABLE_KEY,
    "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
}
BRAINTREE = {
    **NO_GATEWAYS,
    "BRAINTREE_MERCHANT_ID": "merchant_x",
    "BRAINTREE_PUBLIC_KEY": "pub_x",
    "BRAINTREE_PRIVATE_KEY": "priv_x",
}
BOTH = {**STRIPE, **{k: v for k, v in BRAINTREE.items() if k.startswith("BRAINTREE_")}}


@override_settings(**NO_GATEWAYS)
def test_with_no_keys_the_simulated_gateway_is_the_only_and_default_one() -> None:
    assert registry.available_gateways() == ("simulated",)
    assert registry.default_gateway_name() == "simulated"
    assert isinstance(registry.gateway_for(), SimulatedGateway)


@override_settings(**STRIPE)
def test_stripe_keys_make_stripe_available_and_the_default() -> None:
    assert registry.available_gateways() == ("stripe",)
    gateway = registry.gateway_for("stripe")
    assert isinstance(gateway, StripeGateway)
    assert gateway.webhook_secrets == [WEBHOOK_SECRET]


@override_settings(**BRAINTREE)
def test_braintree_keys_make_braintree_available() -> None:
    assert registry.available_gateways() == ("braintree",)
    assert isinstance(registry.gateway_for("braintree"), BraintreeGateway)


@override_settings(**{**BOTH, "PAYMENTS_SIMULATED_GATEWAY": True})
def test_simulated_can_be_offered_next_to_real_gateways() -> None:
    assert registry.available_gateways() == ("stripe", "braintree", "simulated")
    assert registry.default_gateway_name() == "stripe"


@override_settings(**STRIPE)
def test_an_unconfigured_gateway_is_unavailable_with_a_clear_message() -> None:
    with pytest.raises(registry.GatewayUnavailable) as info:
        registry.gateway_for("braintree")
    assert info.value.status_code == 503
    assert info.value.message == "Payments through Braintree are not configured on this platform."
    with pytest.raises(registry.GatewayUnavailable):
        registry.gateway_for("simulated")


def test_an_unknown_gateway_name_is_refused() -> None:
    with pytest.raises(ApplicationError) as info:
        registry.gateway_for("paypal")
    assert info.value.code == "unknown_gateway"


@override_settings(**{**BOTH, "PAYMENTS_SIMULATED_GATEWAY": True})
def test_every_gateway_implements_the_protocol() -> None:
    for name in registry.available_gateways():
        gateway = registry.gateway_for(name)
        assert isinstance(gateway, PaymentGateway)
        assert gateway.name == name


def test_gateways_are_reused_for_the_same_configuration_and_rebuilt_when_it_changes() -> None:
    with override_settings(**STRIPE):
        first = registry.gateway_for("stripe")
        assert registry.gateway_for("stripe") is first
    with override_settings(**{**STRIPE, "STRIPE_WEBHOOK_SECRET": "whsec_" + "r" * 8}):
        assert registry.gateway_for("stripe") is not first


@override_settings(STRIPE_WEBHOOK_SECRET=" whsec_new , whsec_old,, ")
def test_webhook_secrets_are_split_on_commas_in_order() -> None:
    assert registry.stripe_webhook_secrets() == ("whsec_new", "whsec_old")


@override_settings(STRIPE_WEBHOOK_SECRET="")
def test_without_a_webhook_secret_a_development_secret_derives_from_the_secret_key() -> None:
    (secret,) = registry.stripe_webhook_secrets()
    assert secret.startswith("whsec_")
    assert registry.stripe_webhook_secrets() == (secret,)
    with override_settings(SECRET_KEY="another-secret-key-for-this-test-only-0123456789"):
        assert registry.stripe_webhook_secrets() != (secret,)


@override_settings(**NO_GATEWAYS)
def test_without_stripe_the_stripe_webhook_endpoint_verifies_with_the_simulated_gateway() -> None:
    assert isinstance(registry.stripe_webhook_gateway(), SimulatedGateway)


@override_settings(**STRIPE)
def test_with_stripe_the_stripe_webhook_endpoint_verifies_with_stripe() -> None:
    assert isinstance(registry.stripe_webhook_gateway(), StripeGateway)


@pytest.mark.django_db
@override_settings(**NO_GATEWAYS)
def test_in_development_simulated_events_verify_with_the_derived_secret(payment_request: MakeRequest) -> None:
    gateway = registry.gateway_for("simulated")
    assert isinstance(gateway, SimulatedGateway)
    request = payment_request()
    created = gateway.create_payment(request)
    gateway.confirm_payment(
        request, payment_method="pm_card_visa", gateway_payment_id=created.gateway_payment_id
    )
    assert created.gateway_payment_id

    body, headers = gateway.signed_payment_event(created.gateway_payment_id)

    event = registry.stripe_webhook_gateway().parse_webhook(body, headers)
    assert (event.gateway, event.status) == ("simulated", "succeeded")


def test_stripe_api_base_points_the_registry_built_gateway_at_a_fake(
    stripe_fake: StripeFake, payment_request: MakeRequest
) -> None:
    with override_settings(**{**STRIPE, "STRIPE_API_BASE": stripe_fake.url}):
        payment = registry.gateway_for("stripe").create_payment(payment_request())
    assert payment.status == "requires_payment_method"
    assert stripe_fake.requests[-1].header("Authorization") == f"Bearer {STRIPE_SECRET_KEY}"


def test_braintree_api_url_points_the_registry_built_gateway_at_a_fake(
    braintree_fake: BraintreeFake, payment_request: MakeRequest
) -> None:
    overrides = {
        **NO_GATEWAYS,
        "BRAINTREE_MERCHANT_ID": braintree_fake.merchant_id,
        "BRAINTREE_PUBLIC_KEY": braintree_fake.public_key,
        "BRAINTREE_PRIVATE_KEY": braintree_fake.private_key,
        "BRAINTREE_API_URL": braintree_fake.url,
    }
    with override_settings(**overrides):
        payment = registry.gateway_for("braintree").confirm_payment(
            payment_request(currency="USD"), payment_method="fake-valid-nonce"
        )
    assert payment.status == "succeeded"


# --- Settings: read from the environment and secret files, checked at start-up ----------------


def _load_settings(env: dict[str, str], expression: str = "None") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "BRAINTREE_", "PAYMENTS_"))}
    clean.update({"SECRET_KEY": "settings-test-secret-key-0123456789abcdef", "DEBUG": "0", **env})
    code = f"import fintech_portal.settings as s; print({expression})"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=clean, capture_output=True, text=True, timeout=60
    )


def test_gateway_secrets_can_come_from_secret_files(tmp_path: Path) -> None:
    key_file = tmp_path / "stripe_secret_key"
    key_file.write_text("sk_test_" + "f" * 8)
    result = _load_settings(
        {
            "STRIPE_SECRET_KEY_FILE": str(key_file),
            "STRIPE_PUBLISHABLE_KEY": "pk_test_" + "f" * 8,
            "STRIPE_WEBHOOK_SECRET": "whsec_" + "f" * 8,
        },
        "s.STRIPE_SECRET_KEY",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sk_test_" + "f" * 8


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"STRIPE_SECRET_KEY": "sk_test_" + "a" * 8},
            "set both STRIPE_SECRET_KEY and STRIPE_PUBLISHABLE_KEY",
        ),
        (
            {
                "STRIPE_SECRET_KEY": "sk_live_" + "a" * 8,
                "STRIPE_PUBLISHABLE_KEY": "pk_test_" + "a" * 8,
                "STRIPE_WEBHOOK_SECRET": "whsec_" + "a" * 8,
            },
            "both be live or both be test keys",
        ),
        (
            {"STRIPE_SECRET_KEY": "sk_test_" + "a" * 8, "STRIPE_PUBLISHABLE_KEY": "pk_test_" + "a" * 8},
            "STRIPE_WEBHOOK_SECRET is required",
        ),
        (
            {
                "STRIPE_SECRET_KEY": "sk_live_" + "a" * 8,
                "STRIPE_PUBLISHABLE_KEY": "pk_live_" + "a" * 8,
                "STRIPE_WEBHOOK_SECRET": "whsec_" + "a" * 8,
                "STRIPE_API_BASE": "http://127.0.0.1:9",
            },
            "STRIPE_API_BASE must not be set with a live Stripe key",
        ),
        ({"BRAINTREE_MERCHANT_ID": "m", "BRAINTREE_PUBLIC_KEY": "p"}, "set all of BRAINTREE_MERCHANT_ID"),
        ({"BRAINTREE_ENVIRONMENT": "staging"}, "BRAINTREE_ENVIRONMENT must be sandbox or production"),
        (
            {"BRAINTREE_ENVIRONMENT": "production", "BRAINTREE_API_URL": "http://127.0.0.1:9"},
            "BRAINTREE_API_URL must not be set",
        ),
    ],
)
def test_inconsistent_gateway_settings_fail_loudly_at_start_up(env: dict[str, str], problem: str) -> None:
    result = _load_settings(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert problem in result.stderr
