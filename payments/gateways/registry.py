"""Which gateways this platform offers, and the gateway object for a merchant.

A merchant's gateway is a name (``"stripe"``, ``"braintree"``, ``"simulated"``)
stored with the merchant; :func:`gateway_for` turns it into a ready
:class:`~payments.gateways.base.PaymentGateway`. What is available depends only
on settings (environment variables and secret files, never the database):

* ``stripe`` when ``STRIPE_SECRET_KEY`` (and its publishable key) is set;
* ``braintree`` when the merchant id and both keys are set;
* ``simulated`` when neither is set, or when ``PAYMENTS_SIMULATED_GATEWAY`` is on.

Gateway objects are built once per distinct configuration and reused, so
settings overridden in tests take effect without any cache to clear.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from payments.gateways.base import PaymentGateway
from payments.gateways.stripe import split_secrets
from security.errors import ApplicationError

GATEWAY_NAMES = ("stripe", "braintree", "simulated")


class GatewayUnavailable(ApplicationError):
    status_code = 503
    code = "gateway_unavailable"


@dataclass(frozen=True)
class _StripeConfig:
    secret_key: str
    publishable_key: str
    webhook_secrets: tuple[str, ...]
    api_base: str
    site_url: str


@dataclass(frozen=True)
class _BraintreeConfig:
    environment: str
    merchant_id: str
    public_key: str
    private_key: str
    api_url: str


@dataclass(frozen=True)
class _SimulatedConfig:
    webhook_secrets: tuple[str, ...]
    site_url: str


def stripe_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_PUBLISHABLE_KEY)


def braintree_configured() -> bool:
    return bool(
        settings.BRAINTREE_MERCHANT_ID and settings.BRAINTREE_PUBLIC_KEY and settings.BRAINTREE_PRIVATE_KEY
    )


def simulated_enabled() -> bool:
    return bool(getattr(settings, "PAYMENTS_SIMULATED_GATEWAY", False)) or not (
        stripe_configured() or braintree_configured()
    )


def available_gateways() -> tuple[str, ...]:
    """The gateway names merchants may choose, most preferred first."""
    names = []
    if stripe_configured():
        names.append("stripe")
    if braintree_configured():
        names.append("braintree")
    if simulated_enabled():
        names.append("simulated")
    return tuple(names)


def default_gateway_name() -> str:
    """The gateway for a merchant who has not chosen one."""
    return available_gateways()[0]


def stripe_webhook_secrets() -> tuple[str, ...]:
    """``STRIPE_WEBHOOK_SECRET`` split on commas; without one, a development secret.

    The development secret is derived from ``SECRET_KEY``: every process of one
    deployment agrees on it, and it is never a value published in this repository.
    """
    configured = split_secrets(settings.STRIPE_WEBHOOK_SECRET)
    if configured:
        return tuple(configured)
    digest = hmac.new(
        settings.SECRET_KEY.encode(), b"fintech_portal.simulated-stripe-webhooks", hashlib.sha256
    )
    return ("whsec_dev" + digest.hexdigest()[:32],)


def gateway_for(name: str | None = None) -> PaymentGateway:
    """The gateway called ``name`` (the default one when ``None``).

    Raises :class:`GatewayUnavailable` (an ApplicationError) for a gateway this
    platform does not offer, with a message an operator can act on.
    """
    name = name or default_gateway_name()
    if name not in GATEWAY_NAMES:
        raise ApplicationError(f"There is no payment gateway called {name!r}.", code="unknown_gateway")
    if name not in available_gateways():
        raise GatewayUnavailable(f"Payments through {name.title()} are not configured on this platform.")
    site_url = str(getattr(settings, "SITE_URL", "http://127.0.0.1:8000"))
    if name == "stripe":
        return _stripe(
            _StripeConfig(
                secret_key=settings.STRIPE_SECRET_KEY,
                publishable_key=settings.STRIPE_PUBLISHABLE_KEY,
                webhook_secrets=stripe_webhook_secrets(),
                api_base=getattr(settings, "STRIPE_API_BASE", ""),
                site_url=site_url,
            )
        )
    if name == "braintree":
        return _braintree(
            _BraintreeConfig(
                environment=settings.BRAINTREE_ENVIRONMENT,
                merchant_id=settings.BRAINTREE_MERCHANT_ID,
                public_key=settings.BRAINTREE_PUBLIC_KEY,
                private_key=settings.BRAINTREE_PRIVATE_KEY,
                api_url=getattr(settings, "BRAINTREE_API_URL", ""),
            )
        )
    return _simulated(_SimulatedConfig(webhook_secrets=stripe_webhook_secrets(), site_url=site_url))


def stripe_webhook_gateway() -> PaymentGateway:
    """The gateway whose ``parse_webhook`` verifies what arrives at ``/webhooks/stripe/``.

    Stripe when it is configured, the simulated gateway otherwise; both verify
    with :func:`stripe_webhook_secrets` and label simulated events ``simulated``.
    """
    return gateway_for("stripe" if stripe_configured() else "simulated")


@lru_cache(maxsize=8)
def _stripe(config: _StripeConfig) -> PaymentGateway:
    from payments.gateways.stripe import StripeGateway

    return StripeGateway(
        secret_key=config.secret_key,
        publishable_key=config.publishable_key,
        webhook_secrets=config.webhook_secrets,
        api_base=config.api_base or None,
        default_return_url=config.site_url.rstrip("/") + "/",
    )


@lru_cache(maxsize=8)
def _braintree(config: _BraintreeConfig) -> PaymentGateway:
    from payments.gateways.braintree import BraintreeGateway

    return BraintreeGateway(
        environment=config.environment,
        merchant_id=config.merchant_id,
        public_key=config.public_key,
        private_key=config.private_key,
        api_url=config.api_url or None,
    )


@lru_cache(maxsize=8)
def _simulated(config: _SimulatedConfig) -> PaymentGateway:
    from payments.gateways.simulated import SimulatedGateway

    return SimulatedGateway(webhook_secrets=config.webhook_secrets, site_url=config.site_url)


__all__ = [
    "GATEWAY_NAMES",
    "GatewayUnavailable",
    "available_gateways",
    "braintree_configured",
    "default_gateway_name",
    "gateway_for",
    "simulated_enabled",
    "stripe_configured",
    "stripe_webhook_gateway",
    "stripe_webhook_secrets",
]
