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
]
