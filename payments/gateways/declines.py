"""Decline codes and the messages we show customers, shared by every gateway.

We speak Stripe's decline-code vocabulary (https://docs.stripe.com/declines/codes)
and translate Braintree's processor response codes and gateway rejection
reasons into it, so a dashboard or a message never depends on the gateway.

Codes that suggest fraud (``fraudulent``, ``lost_card``, ``stolen_card``...)
deliberately get the generic message: telling a fraudster why a card failed
helps the fraudster.
"""

from __future__ import annotations

GENERIC_DECLINE_MESSAGE = "Your card was declined."
AUTHENTICATION_FAILED = "authentication_failed"

_MESSAGES: dict[str, str] = {
    "generic_decline": GENERIC_DECLINE_MESSAGE,
    "do_not_honor": GENERIC_DECLINE_MESSAGE,
    "insufficient_funds": "Your card has insufficient funds.",
    "card_velocity_exceeded": "Your card has reached its spending limit. Try another card.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "invalid_cvc": "Your card's security code is invalid.",
    "incorrect_number": "Your card number is incorrect.",
    "invalid_number": "Your card number is invalid.",
    "invalid_expiry_month": "Your card's expiration month is invalid.",
    "invalid_expiry_year": "Your card's expiration year is invalid.",
    "incorrect_zip": "Your card's postal code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "try_again_later": "Your card could not be charged right now. Try again in a little bit.",
    "issuer_not_available": "Your bank could not be reached. Try again in a little bit.",
    "card_not_supported": "Your card does not support this type of purchase.",
    "currency_not_supported": "Your card does not support this currency.",
    "transaction_not_allowed": "Your bank does not allow this purchase on your card. Try another card.",
    "restricted_card": "Your card cannot be used for this purchase. Try another card.",
    "call_issuer": "Your card was declined. Contact your bank for details.",
    "authentication_required": "Your bank needs you to confirm this payment. Try again and finish the check.",
    AUTHENTICATION_FAILED: "We could not verify your card with your bank. Try again or use another card.",
    "duplicate_transaction": "An identical payment was made moments ago. Check before paying again.",
    # Fraud-flavoured codes: never say why.
    "fraudulent": GENERIC_DECLINE_MESSAGE,
    "lost_card": GENERIC_DECLINE_MESSAGE,
    "stolen_card": GENERIC_DECLINE_MESSAGE,
    "pickup_card": GENERIC_DECLINE_MESSAGE,
    "merchant_blacklist": GENERIC_DECLINE_MESSAGE,
    "security_violation": GENERIC_DECLINE_MESSAGE,
}

# The customer may retry the same card later and it may work.
RETRYABLE_DECLINES = frozenset(
    {"processing_error", "try_again_later", "issuer_not_available", "reenter_transaction"}
)

# Braintree processor response codes (2000-3000 range) in Stripe's words.
BRAINTREE_PROCESSOR_CODES: dict[str, str] = {
    "2000": "do_not_honor",
    "2001": "insufficient_funds",
    "2002": "card_velocity_exceeded",
    "2003": "card_velocity_exceeded",
    "2004": "expired_card",
    "2005": "incorrect_number",
    "2006": "invalid_expiry_year",
    "2007": "incorrect_number",
    "2010": "incorrect_cvc",
    "2012": "lost_card",
    "2013": "stolen_card",
    "2014": "fraudulent",
    "2015": "transaction_not_allowed",
    "2038": "generic_decline",
    "2044": "call_issuer",
    "2046": "generic_decline",
    "2047": "pickup_card",
    "2057": "restricted_card",
    "2099": "authentication_required",
    "3000": "processing_error",
}

# Braintree gateway rejection reasons in Stripe's words.
BRAINTREE_REJECTION_REASONS: dict[str, str] = {
    "avs": "incorrect_zip",
    "avs_and_cvv": "incorrect_cvc",
    "cvv": "incorrect_cvc",
    "duplicate": "duplicate_transaction",
    "fraud": "fraudulent",
    "risk_threshold": "fraudulent",
    "three_d_secure": AUTHENTICATION_FAILED,
    "token_issuance": "processing_error",
    "application_incomplete": "generic_decline",
}


def decline_message(decline_code: str | None) -> str:
    """The customer-facing sentence for a decline code (the generic one when unknown)."""
    if not decline_code:
        return GENERIC_DECLINE_MESSAGE
    return _MESSAGES.get(decline_code, GENERIC_DECLINE_MESSAGE)


def is_retryable_decline(decline_code: str | None) -> bool:
    return decline_code in RETRYABLE_DECLINES


def braintree_processor_decline(response_code: str | None) -> str:
    if not response_code:
        return "generic_decline"
    return BRAINTREE_PROCESSOR_CODES.get(str(response_code), "generic_decline")


def braintree_rejection_decline(reason: str | None) -> str:
    if not reason:
        return "generic_decline"
    return BRAINTREE_REJECTION_REASONS.get(reason, "generic_decline")
