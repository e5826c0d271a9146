from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.navigation import NavItem, register

        register(NavItem("Payments", "payments_list", "merchant", 20))
        register(NavItem("Payment links", "payment_links", "merchant", 25))
        register(
            NavItem(
                "Review queue", "payments_review_queue", "merchant", 21, merchant_action="payments.review"
            )
        )
        register(NavItem("Disputes", "payments_disputes", "merchant", 22))
        register(
            NavItem(
                "Fraud rules", "payments_fraud_rules", "merchant", 27, merchant_action="fraud_rules.manage"
            )
        )

        from accounts import notices
        from payments import key_hygiene

        notices.register("payments.gateway_keys", key_hygiene.admin_notices)

        from accounts import overview as overview_panels
        from payments import overview

        overview_panels.register("payments.charts", overview.render_panel, order=10)

        from payments import merchant_webhooks

        merchant_webhooks.connect_signals()
