"""Create demo people and a demo merchant with known credentials (DEBUG only)."""

from __future__ import annotations

import hashlib
import json
from base64 import b32encode
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import roles, services
from accounts.models import EncryptedTOTPDevice, Membership, Merchant, Role, User

DEMO_DOMAIN = "demo.example.com"
DEMO_MERCHANT_LEGAL_NAME = "Demo Shop Ltd"

# (email local part, role, password). Demo-only credentials, refused when DEBUG is off.
DEMO_PEOPLE: list[tuple[str, str, str]] = [
    ("owner", Role.OWNER, "demo-owner-pass-2026"),
    ("analyst", Role.ANALYST, "demo-analyst-pass-2026"),
    ("compliance.analyst", roles.COMPLIANCE_ANALYST, "demo-compliance-pass-2026"),
    ("compliance.supervisor", roles.COMPLIANCE_SUPERVISOR, "demo-supervisor-pass-2026"),
    ("privacy", roles.PRIVACY_OFFICER, "demo-privacy-pass-2026"),
    ("security", roles.SECURITY_OFFICER, "demo-security-pass-2026"),
    ("admin", "superuser", "demo-admin-pass-2026"),
]


def demo_totp_key_hex(email: str) -> str:
    """A stable 20-byte TOTP key per demo email, so the secrets stay the same across runs."""
    return hashlib.sha256(f"fintech_portal demo totp {email}".encode()).hexdigest()[:40]


def _base32(hex_key: str) -> str:
    return b32encode(bytes.fromhex(hex_key)).decode().rstrip("=")


class Command(BaseCommand):
    help = "Seed demo users (one per role), a demo merchant and known TOTP secrets. DEBUG only."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="Print the demo credentials as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo refuses to run with DEBUG off: it creates accounts with published passwords."
            )
        people = self._seed()
        if options["json"]:
            self.stdout.write(json.dumps(people, indent=2))
        else:
            self.stdout.write(self.style.SUCCESS(f"Demo data ready: {len(people)} people."))
            for person in people:
                self.stdout.write(
                    f"  {person['role']:<22} {person['email']:<40} {person['password']}  "
                    f"TOTP {person['totp_secret']}"
                )

    @transaction.atomic
    def _seed(self) -> list[dict[str, str]]:
        roles.sync_staff_groups()
        out: list[dict[str, str]] = []
        users: dict[str, User] = {}
        for local, role, password in DEMO_PEOPLE:
            email = f"{local}@{DEMO_DOMAIN}"
            user, _ = User.objects.get_or_create(
                email=email, defaults={"full_name": local.replace(".", " ").title()}
            )
            user.set_password(password)
            user.is_active = True
            user.is_superuser = user.is_staff = role == "superuser"
            user.save()
            if role in roles.STAFF_ROLES:
                user.groups.set([Group.objects.get(name=role)])
            key = demo_totp_key_hex(email)
            device = EncryptedTOTPDevice.objects.filter(user=user, confirmed=True).first()
            if device is None:
                EncryptedTOTPDevice.objects.filter(user=user).delete()
                EncryptedTOTPDevice.objects.create(
                    user=user, name="Authenticator app", key=key, confirmed=True
                )
            elif device.key != key:
                device.key = key
                device.save(update_fields=["key"])
            users[local] = user
            out.append({"email": email, "password": password, "role": role, "totp_secret": _base32(key)})

        merchant = Merchant.objects.filter(legal_name=DEMO_MERCHANT_LEGAL_NAME).first()
        if merchant is None:
            merchant = services.merchant_create(
                actor=None,
                display_name="Demo Shop",
                legal_name=DEMO_MERCHANT_LEGAL_NAME,
                country="GB",
                data_region=Merchant.Region.EU,
                owner=users["owner"],
            )
            services.merchant_set_status(
                actor=None, merchant=merchant, status=Merchant.Status.ACTIVE, reason="demo data"
            )
        Membership.objects.update_or_create(
            user=users["owner"], merchant=merchant, defaults={"role": Role.OWNER}
        )
        Membership.objects.update_or_create(
            user=users["analyst"], merchant=merchant, defaults={"role": Role.ANALYST}
        )
        return out
