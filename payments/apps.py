from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.navigation import NavItem, register

        register(NavItem("Payments", "payments_list", "merchant", 20))
        register(NavItem("Payment links", "payment_links", "merchant", 25))

        from accounts import notices
        from payments import key_hygiene

        notices.register("payments.gateway_keys", key_hygiene.admin_notices)

        from payments import merchant_webhooks

        merchant_webhooks.connect_signals()
