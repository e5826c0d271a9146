from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from accounts import views as account_views
from accounts.urls import developer_patterns, team_patterns
from fintech_portal import health

urlpatterns = [
    path("", account_views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("accounts/", include("accounts.urls")),
    path("team/", include(team_patterns)),
    path("developers/", include(developer_patterns)),
    path("invite/<str:token>/", account_views.invitation_accept, name="invitation_accept"),
    path("switch-merchant/", account_views.switch_merchant, name="switch_merchant"),
    path("", include("payments.urls")),
    path("", include("kyc.urls")),
    path("", include("compliance.urls")),
    path("", include("security.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/v1/", include("fintech_portal.api_urls")),
]
