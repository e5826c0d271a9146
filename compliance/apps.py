from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.navigation import NavItem, register
        from accounts.roles import PRIVACY_OFFICER, SECURITY_OFFICER

        register(NavItem("Privacy requests", "privacy_requests", "staff", 30, staff_roles=(PRIVACY_OFFICER,)))
        register(NavItem("Incidents", "incidents", "staff", 40, staff_roles=(SECURITY_OFFICER,)))
        register(NavItem("Encryption keys", "key_management", "staff", 95, permission="security.manage_keys"))
