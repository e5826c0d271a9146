from allauth.account import views as allauth_views
from django.urls import path, re_path

from accounts import views, views_developers, views_two_factor

# Only the allauth flows we use: sign-in, sign-out, password change and reset.
# Sign-up is closed (people join by invitation) and the second factor is ours.
allauth_patterns = [
    path("login/", allauth_views.login, name="account_login"),
    path("logout/", allauth_views.logout, name="account_logout"),
    path("inactive/", allauth_views.account_inactive, name="account_inactive"),
    path("password/change/", allauth_views.password_change, name="account_change_password"),
    path("password/reset/", allauth_views.password_reset, name="account_reset_password"),
    path("password/reset/done/", allauth_views.password_reset_done, name="account_reset_password_done"),
    re_path(
        r"^password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$",
        allauth_views.password_reset_from_key,
        name="account_reset_password_from_key",
    ),
    path(
        "password/reset/key/done/",
        allauth_views.password_reset_from_key_done,
        name="account_reset_password_from_key_done",
    ),
]

two_factor_patterns = [
    path("2fa/setup/", views_two_factor.enrol, name="two_factor_enrol"),
    path("2fa/backup-codes/", views_two_factor.backup_codes, name="two_factor_backup_codes"),
    path("2fa/verify/", views_two_factor.verify, name="two_factor_verify"),
    path("2fa/confirm/", views_two_factor.step_up, name="two_factor_step_up"),
    path("2fa/replace/", views_two_factor.reenrol, name="two_factor_reenrol"),
    path(
        "2fa/backup-codes/regenerate/",
        views_two_factor.regenerate_backup_codes,
        name="two_factor_backup_codes_regenerate",
    ),
]

urlpatterns = [
    *allauth_patterns,
    *two_factor_patterns,
    path("security/", views.settings_security, name="settings_security"),
    path("sign-out-everywhere/", views.sign_out_everywhere, name="sign_out_everywhere"),
]

team_patterns = [
    path("", views.team, name="team"),
    path("members/<int:membership_id>/role/", views.team_member_role, name="team_member_role"),
    path("members/<int:membership_id>/remove/", views.team_member_remove, name="team_member_remove"),
    path("invitations/<str:public_id>/revoke/", views.invitation_revoke, name="invitation_revoke"),
]

developer_patterns = [
    path("", views_developers.developers, name="developers"),
    path("keys/new/", views_developers.api_key_create, name="api_key_create"),
    path("keys/<str:public_id>/rotate/", views_developers.api_key_rotate, name="api_key_rotate"),
    path("keys/<str:public_id>/revoke/", views_developers.api_key_revoke, name="api_key_revoke"),
]
