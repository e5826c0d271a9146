"""HTTP-level fakes of the vendors beyond our walls (Stripe, Braintree).

Each fake is a small threaded ``http.server`` on 127.0.0.1 that speaks the
vendor's wire format, so the vendor's real SDK runs above it unchanged. They
have no pytest dependency: integration tests, benchmarks and a developer at a
shell can all start one::

    from tests.fakes.stripe_fake import StripeFake
    with StripeFake() as fake:
        client = stripe.StripeClient(key, base_addresses={"api": fake.url})

or run one in the foreground: ``python -m tests.fakes.stripe_fake --port 12111``.
"""
