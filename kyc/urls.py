from django.urls import path

from accounts.areas import area_page
from accounts.roles import COMPLIANCE_ANALYST, COMPLIANCE_SUPERVISOR

COMPLIANCE = (COMPLIANCE_ANALYST, COMPLIANCE_SUPERVISOR)

urlpatterns = [
    path(
        "kyc/",
        area_page(
            title="KYC review queue",
            description="Merchant onboarding applications, documents and sanctions hits "
            "waiting for review will queue here.",
            staff_roles=COMPLIANCE,
        ),
        name="kyc_queue",
    ),
    path(
        "alerts/",
        area_page(
            title="Transaction-monitoring alerts",
            description="Alerts raised by monitoring rules on payments will queue here.",
            staff_roles=COMPLIANCE,
        ),
        name="monitoring_alerts",
    ),
]
