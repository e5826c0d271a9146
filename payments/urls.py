from django.urls import path

from payments import (
    views_checkout,
    views_dashboard,
    views_disputes,
    views_fraud,
    views_links,
    views_payments,
    views_webhooks,
    webhooks,
)

urlpatterns = [
    path("payments/", views_dashboard.payments_list, name="payments_list"),
    path("payments/export/", views_dashboard.export_create, name="payments_export_create"),
    path("payments/exports/", views_dashboard.exports_list, name="payment_exports"),
    path("payments/exports/<str:public_id>/", views_dashboard.export_detail, name="payment_export_detail"),
    path(
        "payments/exports/<str:public_id>/progress.json",
        views_dashboard.export_progress,
        name="payment_export_progress",
    ),
    path(
        "payments/exports/<str:public_id>/download/",
        views_dashboard.export_download,
        name="payment_export_download",
    ),
    path("payments/links/", views_links.links, name="payment_links"),
    path("payments/links/<str:public_id>/", views_links.link_detail, name="payment_link_detail"),
    # Fraud rules, the review queue and disputes (before payments/<public_id>/, which would match them).
    path("payments/review/", views_fraud.review_queue, name="payments_review_queue"),
    path("payments/disputes/", views_disputes.disputes, name="payments_disputes"),
    path("payments/fraud-rules/", views_fraud.rules_list, name="payments_fraud_rules"),
    path("payments/fraud-rules/new/<str:kind>/", views_fraud.rule_create, name="payments_fraud_rule_create"),
    path("payments/fraud-rules/<str:public_id>/", views_fraud.rule_edit, name="payments_fraud_rule_edit"),
    path(
        "payments/fraud-rules/<str:public_id>/toggle/",
        views_fraud.rule_toggle,
        name="payments_fraud_rule_toggle",
    ),
    path(
        "payments/fraud-rules/<str:public_id>/delete/",
        views_fraud.rule_delete,
        name="payments_fraud_rule_delete",
    ),
    path("payments/<str:public_id>/", views_payments.payment_detail, name="payment_detail"),
    path("payments/<str:public_id>/refund/", views_payments.refund_create, name="payment_refund"),
    path("payments/<str:public_id>/review/", views_payments.review_decide, name="payment_review_decide"),
    # Developers → Webhooks: the merchant's own endpoints (outgoing events).
    path("developers/webhooks/", views_webhooks.endpoints, name="webhook_endpoints"),
    path("developers/webhooks/new/", views_webhooks.endpoint_create, name="webhook_endpoint_create"),
    path(
        "developers/webhooks/<str:public_id>/", views_webhooks.endpoint_detail, name="webhook_endpoint_detail"
    ),
    # POST enabled=0 (disable) or enabled=1 (enable).
    path(
        "developers/webhooks/<str:public_id>/status/",
        views_webhooks.endpoint_set_status,
        name="webhook_endpoint_status",
    ),
    path(
        "developers/webhooks/<str:public_id>/delete/",
        views_webhooks.endpoint_delete,
        name="webhook_endpoint_delete",
    ),
    path(
        "developers/webhooks/<str:public_id>/deliveries/<str:delivery_id>/",
        views_webhooks.delivery_detail,
        name="webhook_delivery_detail",
    ),
    path(
        "developers/webhooks/<str:public_id>/deliveries/<str:delivery_id>/resend/",
        views_webhooks.delivery_resend,
        name="webhook_delivery_resend",
    ),
    # Public: customers pay here; gateways call the webhooks.
    path("pay/<str:public_id>/", views_checkout.pay, name="checkout_pay"),
    path("pay/<str:public_id>/return/", views_checkout.checkout_return, name="checkout_return"),
    path("pay/<str:public_id>/done/", views_checkout.checkout_done, name="checkout_done"),
    path(
        "checkout/simulated/3ds/<str:intent_id>/",
        views_checkout.simulated_challenge,
        name="checkout_simulated_3ds",
    ),
    path("webhooks/stripe/", webhooks.stripe_webhook, name="webhook_stripe"),
    path("webhooks/braintree/", webhooks.braintree_webhook, name="webhook_braintree"),
]
