#!/usr/bin/env python
"""Server time of the signed-in pages every user sees (overview, team, settings) and of sign-in."""

from __future__ import annotations

import time

from _setup import django_on_scratch_db
from _setup import timed as _timed

ROUNDS = 200


def timed(fn, rounds: int = ROUNDS) -> tuple[float, float]:
    return _timed(fn, rounds)


def main() -> None:
    django_on_scratch_db("pages")
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY

    from accounts.models import EncryptedTOTPDevice, Membership, Merchant, Role, User

    merchant = Merchant.objects.create(
        display_name="Bench", legal_name="Bench Ltd", country="GB", status="active"
    )
    owner = User.objects.create_user("owner@bench.example.com", "bench-password-123456")
    Membership.objects.create(user=owner, merchant=merchant, role=Role.OWNER)
    for i in range(100):
        u = User.objects.create_user(f"member{i}@bench.example.com", None)
        Membership.objects.create(user=u, merchant=merchant, role=Role.ANALYST)
    device = EncryptedTOTPDevice.objects.create(user=owner, confirmed=True)
    client = Client()
    client.force_login(owner, backend="allauth.account.auth_backends.AuthenticationBackend")
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session["otp_verified_at"] = int(time.time())
    session.save()

    print(f"{'page':<28}{'median ms':>12}{'p95 ms':>10}")
    for label, path in [
        ("overview", "/"),
        ("team (101 members)", "/team/"),
        ("settings", "/accounts/security/"),
    ]:
        assert client.get(path).status_code == 200
        median, p95 = timed(lambda p=path: client.get(p))
        print(f"{label:<28}{median:>12.2f}{p95:>10.2f}")
    median, p95 = timed(
        lambda: Client().post(
            "/accounts/login/", {"login": "owner@bench.example.com", "password": "bench-password-123456"}
        ),
        rounds=20,
    )
    print(f"{'sign-in (password step)':<28}{median:>12.2f}{p95:>10.2f}   (PBKDF2 hashing dominates)")


if __name__ == "__main__":
    main()
