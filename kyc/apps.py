from django.apps import AppConfig


class KycConfig(AppConfig):
    name = "kyc"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.navigation import NavItem, register
        from accounts.roles import COMPLIANCE_ANALYST, COMPLIANCE_SUPERVISOR

        compliance = (COMPLIANCE_ANALYST, COMPLIANCE_SUPERVISOR)
        register(NavItem("KYC queue", "kyc_queue", "staff", 10, staff_roles=compliance))
        register(NavItem("Alerts", "monitoring_alerts", "staff", 20, staff_roles=compliance))
