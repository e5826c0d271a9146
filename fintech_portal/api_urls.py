"""``/api/v1/``: each app contributes its endpoints here."""

from django.urls import path

from accounts import api
from payments import api as payments_api

urlpatterns = [
    path("me", api.MeView.as_view(), name="api_me"),
    path(
        "checkout_sessions",
        payments_api.CheckoutSessionListCreate.as_view(),
        name="api_checkout_sessions",
    ),
    path(
        "checkout_sessions/<str:public_id>",
        payments_api.CheckoutSessionDetail.as_view(),
        name="api_checkout_session",
    ),
    path(
        "checkout_sessions/<str:public_id>/expire",
        payments_api.CheckoutSessionExpire.as_view(),
        name="api_checkout_session_expire",
    ),
    path("payments", payments_api.PaymentListView.as_view(), name="api_payments"),
    path("payments/<str:public_id>", payments_api.PaymentDetail.as_view(), name="api_payment"),
    path("refunds", payments_api.RefundListCreate.as_view(), name="api_refunds"),
    path("refunds/<str:public_id>", payments_api.RefundDetail.as_view(), name="api_refund"),
]
