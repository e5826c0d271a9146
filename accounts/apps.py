from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate


def _sync_groups(sender: object, **kwargs: object) -> None:
    from accounts.roles import sync_staff_groups

    sync_staff_groups()


class AccountsConfig(AppConfig):
    default = True
    name = "accounts"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts import schema, signals  # noqa: F401  (audit receivers, OpenAPI extension)

        post_migrate.connect(_sync_groups, dispatch_uid="accounts.sync_staff_groups")

        # Invitation tokens and password-reset keys travel in URL paths: no log may keep them.
        from security.logs import register_secret_path

        register_secret_path("/invite/")  # invitation_accept
        # account_reset_password_from_key: <uidb36>-<key> (never ".../key/done/")
        register_secret_path("/accounts/password/reset/key/", segment=r"[0-9A-Za-z]+-[^/?#&\s\"'%<>]+")

        from accounts.navigation import NavItem, register

        register(NavItem("Overview", "home", "merchant", 10))
        register(NavItem("Team", "team", "merchant", 30))
        register(NavItem("Developers", "developers", "merchant", 40, merchant_action="api_keys.manage"))
        register(NavItem("Settings", "settings_security", "merchant", 50))
        register(NavItem("Audit log", "audit_log", "staff", 90, permission="security.view_audit_log"))


class PortalAdminConfig(admin_apps.AdminConfig):
    """The Django admin, installed as an OTP-only site."""

    default = False
    default_site = "accounts.admin_site.PortalAdminSite"
