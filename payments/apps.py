from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.navigation import NavItem, register

        register(NavItem("Payments", "payments_list", "merchant", 20))
