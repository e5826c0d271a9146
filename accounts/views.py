"""Pages for the signed-in user: overview, team, invitations, security settings."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login, logout
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts import selectors, services
from accounts.forms import AcceptInvitationForm, InviteForm, RoleForm
from accounts.merchant_roles import TEAM_INVITE, TEAM_MANAGE, TEAM_VIEW, refusal, role_can
from accounts.middleware import MERCHANT_SESSION_KEY
from accounts.models import Role
from accounts.otp import require_recent_otp
from accounts.overview import panels_for
from accounts.permissions import merchant_member_required
from accounts.roles import STAFF_ROLES
from security.errors import ApplicationError


def home(request: HttpRequest) -> HttpResponse:
    membership = request.membership  # type: ignore[attr-defined]
    if membership:
        return render(
            request,
            "accounts/overview.html",
            {"merchant": membership.merchant, "panels": panels_for(request, membership.merchant)},
        )
    if request.user.is_platform_staff:
        roles = [
            STAFF_ROLES[n] for n in request.user.groups.values_list("name", flat=True) if n in STAFF_ROLES
        ]
        from accounts.notices import admin_notices

        notices = admin_notices() if request.user.is_superuser else []
        return render(request, "accounts/staff_home.html", {"roles": roles, "notices": notices})
    return render(request, "accounts/no_team.html")


@require_POST
def switch_merchant(request: HttpRequest) -> HttpResponse:
    public_id = request.POST.get("merchant", "")
    membership = selectors.membership_for(request.user, public_id)
    if membership is None or membership.merchant.public_id != public_id:
        messages.error(request, "You are not a member of that merchant.")
    else:
        request.session[MERCHANT_SESSION_KEY] = public_id
        messages.success(request, f"Now working in {membership.merchant.display_name}.")
    return redirect("home")


# --- Team ----------------------------------------------------------------------------


@merchant_member_required(TEAM_VIEW)
@require_http_methods(["GET", "POST"])
def team(request: HttpRequest) -> HttpResponse:
    """The team page; a POST invites someone (a team change: the role table, then a fresh code)."""
    membership = request.membership  # type: ignore[attr-defined]
    if request.method == "POST":
        if not role_can(membership.role, TEAM_INVITE):
            messages.error(request, refusal(membership.role, TEAM_INVITE))
            return redirect("team")
        return _team_invite(request)
    return _team_page(request, None)


def _team_page(request: HttpRequest, form: InviteForm | None, status: int = 200) -> HttpResponse:
    membership = request.membership  # type: ignore[attr-defined]
    merchant = membership.merchant
    can_invite = role_can(membership.role, TEAM_INVITE)
    return render(
        request,
        "accounts/team.html",
        {
            "merchant": merchant,
            "members": selectors.team_members(merchant),
            "invitations": selectors.pending_invitations(merchant) if can_invite else [],
            "form": (form or InviteForm()) if can_invite else None,
            "is_owner": role_can(membership.role, TEAM_MANAGE),
            "roles": Role.choices,
        },
        status=status,
    )


@require_recent_otp(minutes=5)
def _team_invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _team_page(request, form, 400)
    try:
        issued = services.invitation_create(
            actor=request.user,
            merchant=request.membership.merchant,  # type: ignore[attr-defined]
            email=form.cleaned_data["email"],
            role=form.cleaned_data["role"],
        )
    except ApplicationError as exc:
        form.add_error(None, exc.message)
        return _team_page(request, form, 400)
    messages.success(
        request,
        f"Invitation sent to {issued.invitation.email}. The link works once and expires in 72 hours.",
    )
    return redirect("team")


@merchant_member_required(TEAM_MANAGE)
@require_POST
@require_recent_otp(minutes=5)
def team_member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    merchant = request.membership.merchant  # type: ignore[attr-defined]
    target = selectors.team_member(merchant, membership_id)
    if target is None:
        raise Http404("No such teammate.")
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the listed roles.")
        return redirect("team")
    try:
        services.membership_change_role(actor=request.user, membership=target, role=form.cleaned_data["role"])
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{target.user.email} is now {target.get_role_display().lower()}.")
    return redirect("team")


@merchant_member_required(TEAM_MANAGE)
@require_http_methods(["GET", "POST"])
@require_recent_otp(minutes=5)
def team_member_remove(request: HttpRequest, membership_id: int) -> HttpResponse:
    merchant = request.membership.merchant  # type: ignore[attr-defined]
    target = selectors.team_member(merchant, membership_id)
    if target is None:
        raise Http404("No such teammate.")
    if request.method == "POST":
        try:
            services.membership_remove(actor=request.user, membership=target)
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{target.user.email} no longer has access to {merchant.display_name}.")
        return redirect("team")
    return render(request, "accounts/team_remove_confirm.html", {"target": target, "merchant": merchant})


@merchant_member_required(TEAM_INVITE)
@require_POST
def invitation_revoke(request: HttpRequest, public_id: str) -> HttpResponse:
    merchant = request.membership.merchant  # type: ignore[attr-defined]
    invitation = selectors.invitation_for_merchant(merchant, public_id)
    if invitation is None:
        raise Http404("No such invitation.")
    try:
        services.invitation_revoke(actor=request.user, invitation=invitation)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Invitation to {invitation.email} withdrawn.")
    return redirect("team")


@never_cache
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Public: the invitee sets a password (or joins with their existing account)."""
    invitation = services.invitation_lookup(token)
    if invitation is None or invitation.status != "pending":
        reason = {
            None: "This invitation link is not valid.",
            "accepted": "This invitation has already been used.",
            "revoked": "This invitation was withdrawn.",
            "expired": "This invitation has expired. Ask your team for a new one.",
        }[invitation.status if invitation else None]
        return render(
            request, "accounts/invitation_invalid.html", {"reason": reason}, status=410 if invitation else 404
        )

    from accounts.models import User

    existing = User.objects.filter(email=invitation.email).first()
    if existing is not None:
        signed_in_as_invitee = (
            request.user.is_authenticated and request.user.pk == existing.pk and request.user.is_verified()
        )
        if request.method == "POST" and signed_in_as_invitee:
            try:
                services.invitation_accept_existing_user(token=token, user=request.user)
            except ApplicationError as exc:
                messages.error(request, exc.message)
                return redirect("home")
            request.session[MERCHANT_SESSION_KEY] = invitation.merchant.public_id
            messages.success(request, f"You joined {invitation.merchant.display_name}.")
            return redirect("home")
        return render(
            request,
            "accounts/invitation_existing.html",
            {"invitation": invitation, "signed_in_as_invitee": signed_in_as_invitee},
        )

    form = AcceptInvitationForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                user = services.invitation_accept_new_user(
                    token=token,
                    password=form.cleaned_data["password1"],
                    full_name=form.cleaned_data["full_name"],
                )
            except ApplicationError as exc:
                form.add_error("password1" if exc.code == "weak_password" else None, exc.message)
                status = 400
            else:
                if request.user.is_authenticated:
                    logout(request)
                login(request, user, backend="allauth.account.auth_backends.AuthenticationBackend")
                request.session[MERCHANT_SESSION_KEY] = invitation.merchant.public_id
                return redirect("two_factor_enrol")
        else:
            status = 400
    return render(
        request, "accounts/invitation_accept.html", {"invitation": invitation, "form": form}, status=status
    )


# --- Settings ----------------------------------------------------------------------------


@never_cache
def settings_security(request: HttpRequest) -> HttpResponse:
    from accounts.models import BackupCodeDevice

    backup = BackupCodeDevice.objects.filter(user=request.user).first()
    totp = services.confirmed_totp(request.user)
    return render(
        request,
        "accounts/settings_security.html",
        {
            "totp": totp,
            "backup_left": backup.remaining() if backup else 0,
            "memberships": selectors.memberships_for_user(request.user),
        },
    )


@require_POST
def sign_out_everywhere(request: HttpRequest) -> HttpResponse:
    services.user_sign_out_everywhere(user=request.user)
    logout(request)
    messages.success(request, "You have been signed out on every device.")
    return redirect("account_login")
