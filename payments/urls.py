from django.urls import path

from accounts.areas import area_page

urlpatterns = [
    path(
        "payments/",
        area_page(
            title="Payments",
            description="Payments taken through your checkout pages will be listed here, "
            "with filters, search, refunds and CSV export.",
            merchant=True,
        ),
        name="payments_list",
    ),
    path(
        "developers/",
        area_page(
            title="Developers",
            description="API keys and webhook endpoints for your integration will be managed here.",
            merchant=True,
        ),
        name="developers",
    ),
]
