from django.urls import path

from accounts.areas import area_page
from accounts.roles import PRIVACY_OFFICER, SECURITY_OFFICER
from compliance import views_keys

urlpatterns = [
    path(
        "privacy/",
        area_page(
            title="Privacy requests",
            description="GDPR and CCPA access and deletion requests, with their statutory "
            "deadlines, will be worked here.",
            staff_roles=(PRIVACY_OFFICER,),
        ),
        name="privacy_requests",
    ),
    path(
        "incidents/",
        area_page(
            title="Incidents",
            description="Security incidents and breach notifications, timed against the "
            "regulators' 72-hour clocks, will be run from here.",
            staff_roles=(SECURITY_OFFICER,),
        ),
        name="incidents",
    ),
    path("security/keys/", views_keys.key_management, name="key_management"),
    path("security/keys/rotate/", views_keys.key_rotation_start, name="key_rotation_start"),
    path(
        "security/keys/rotations/<str:public_id>.json",
        views_keys.key_rotation_progress,
        name="key_rotation_progress",
    ),
]
