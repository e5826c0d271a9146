"""Payments models, one module per area; everything is importable from ``payments.models``."""

from payments.models.api import IdempotencyRecord
from payments.models.core import (
    CheckoutSession,
    Customer,
    Dispute,
    Payment,
    PaymentEvent,
    PaymentSettings,
    Refund,
    WebhookEvent,
)
from payments.models.dashboard import PaymentDailyStat, PaymentExport, PaymentExportPart
from payments.models.endpoints import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from payments.models.fraud import FraudRule
from payments.models.gateway_state import GatewaySecretSighting, SimulatedIntent

__all__ = [
    "CheckoutSession",
    "Customer",
    "Dispute",
    "FraudRule",
    "GatewaySecretSighting",
    "IdempotencyRecord",
    "Payment",
    "PaymentDailyStat",
    "PaymentEvent",
    "PaymentExport",
    "PaymentExportPart",
    "PaymentSettings",
    "Refund",
    "SimulatedIntent",
    "WebhookDelivery",
    "WebhookDeliveryAttempt",
    "WebhookEndpoint",
    "WebhookEvent",
]
