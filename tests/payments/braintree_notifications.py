"""Braintree notifications as Braintree sends them for our payments, signed like the real thing.

The SDK's ``webhook_testing.sample_notification`` fills a transaction or dispute with sample
values, among them a made-up ``merchant-account-id``. A real notification names the merchant
account the transaction was made in, so :func:`notification` puts the one we ask for in its
place (and, optionally, an ``order-id``) and signs the payload again with the platform's keys,
exactly as the SDK signs its samples.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import urlencode

from braintree import BraintreeGateway as SdkGateway
from braintree.util.crypto import Crypto


def notification(
    sdk: SdkGateway,
    kind: str,
    object_id: str,
    *,
    merchant_account: str | None = "fake_usd",
    order_id: str | None = None,
) -> bytes:
    """The form body Braintree POSTs (``bt_signature``, ``bt_payload``) for ``kind``.

    ``merchant_account``: the account its transaction or dispute names (``None`` leaves the
    sample's element out). ``order_id``: the order id (our ``pay_...``) its transaction echoes.
    """
    sample = sdk.webhook_testing.sample_notification(kind, object_id)
    xml = base64.b64decode(sample["bt_payload"]).decode()
    account_xml = f"<merchant-account-id>{merchant_account}</merchant-account-id>" if merchant_account else ""
    if "<merchant-account-id>" in xml:
        xml = re.sub(r"<merchant-account-id>[^<]*</merchant-account-id>", account_xml, xml)
    else:  # the sample's transaction names none: add it, as Braintree's do
        xml = xml.replace("<transaction>", f"<transaction>{account_xml}", 1)
    if order_id is not None:
        xml = re.sub(r"<order-id[^>]*/>|<order-id>[^<]*</order-id>", "", xml)
        xml = xml.replace("<transaction>", f"<transaction><order-id>{order_id}</order-id>", 1)
    payload = base64.encodebytes(xml.encode()).decode()
    config = sdk.config
    signature = f"{config.public_key}|{Crypto.sha1_hmac_hash(config.private_key, payload)}"
    return urlencode({"bt_signature": signature, "bt_payload": payload}).encode()
