"""The one table of what each merchant team role may do.

Every check of a merchant role reads this table: the dashboard's view guard
(:func:`accounts.permissions.merchant_member_required`), the services' checks
(:func:`accounts.selectors.member_can`), the merchant API for a team session,
and the merchant API for an API key, whose power is its scope intersected with
its creator's *current* role (:func:`key_can`). Nothing else writes a list of
roles: to change who may do something, change it here.
"""

from __future__ import annotations

from dataclasses import dataclass

from accounts.models import ApiKey, Role

# Actions. Names are "<area>.<verb>"; each has one row in ROLE_TABLE.
PAYMENTS_VIEW = "payments.view"
PAYMENTS_REFUND = "payments.refund"
PAYMENTS_REVIEW = "payments.review"
PAYMENTS_EXPORT = "payments.export"
PAYMENTS_EXPORT_FULL_EMAILS = "payments.export_full_emails"
LINKS_MANAGE = "links.manage"
DISPUTES_VIEW = "disputes.view"
FRAUD_RULES_MANAGE = "fraud_rules.manage"
TEAM_VIEW = "team.view"
TEAM_INVITE = "team.invite"
TEAM_INVITE_OWNER = "team.invite_owner"
TEAM_MANAGE = "team.manage"
API_KEYS_MANAGE = "api_keys.manage"
WEBHOOKS_MANAGE = "webhooks.manage"


@dataclass(frozen=True)
class Permission:
    roles: frozenset[str]
    doing: str  # ends the sentence "Your role does not allow you to …"
    allowed_text: str  # who may, for refusals: "Only owners and admins can …"


OWNER, ADMIN, DEVELOPER = Role.OWNER, Role.ADMIN, Role.DEVELOPER
EVERYONE = frozenset(Role.values)

ROLE_TABLE: dict[str, Permission] = {
    PAYMENTS_VIEW: Permission(EVERYONE, "see payments", "every team member"),
    PAYMENTS_REFUND: Permission(frozenset({OWNER, ADMIN}), "refund payments", "owners and admins"),
    PAYMENTS_REVIEW: Permission(
        frozenset({OWNER, ADMIN}), "decide on payments held for review", "owners and admins"
    ),
    PAYMENTS_EXPORT: Permission(EVERYONE, "export payments", "every team member"),
    PAYMENTS_EXPORT_FULL_EMAILS: Permission(
        frozenset({OWNER, ADMIN}), "see customers' full email addresses in exports", "owners and admins"
    ),
    LINKS_MANAGE: Permission(
        frozenset({OWNER, ADMIN, DEVELOPER}),
        "create or expire payment links",
        "owners, admins and developers",
    ),
    DISPUTES_VIEW: Permission(EVERYONE, "see disputes", "every team member"),
    FRAUD_RULES_MANAGE: Permission(frozenset({OWNER, ADMIN}), "manage fraud rules", "owners and admins"),
    TEAM_VIEW: Permission(EVERYONE, "see the team", "every team member"),
    TEAM_INVITE: Permission(frozenset({OWNER, ADMIN}), "invite teammates", "owners and admins"),
    TEAM_INVITE_OWNER: Permission(frozenset({OWNER}), "invite another owner", "owners"),
    TEAM_MANAGE: Permission(frozenset({OWNER}), "change roles or remove teammates", "owners"),
    API_KEYS_MANAGE: Permission(
        frozenset({OWNER, ADMIN, DEVELOPER}), "manage API keys", "owners, admins and developers"
    ),
    WEBHOOKS_MANAGE: Permission(
        frozenset({OWNER, ADMIN, DEVELOPER}), "manage webhook endpoints", "owners, admins and developers"
    ),
}

ACTIONS = frozenset(ROLE_TABLE)

# What each API key scope can reach at most (then limited by its creator's current role).
SCOPE_ACTIONS: dict[str, frozenset[str]] = {
    ApiKey.Scope.READ: frozenset({PAYMENTS_VIEW}),
    ApiKey.Scope.WRITE: frozenset({PAYMENTS_VIEW, LINKS_MANAGE, PAYMENTS_REFUND}),
}


def _row(action: str) -> Permission:
    try:
        return ROLE_TABLE[action]
    except KeyError:
        raise ValueError(f"unknown merchant action {action!r}") from None


def check_action(action: str) -> str:
    """``action`` if the table knows it; raises otherwise (so a typo fails at import time)."""
    _row(action)
    return action


def role_can(role: str | None, action: str) -> bool:
    """Whether a team member with ``role`` may do ``action``."""
    return role is not None and role in _row(action).roles


def roles_allowed(action: str) -> frozenset[str]:
    return _row(action).roles


def actions_for(role: str | None) -> frozenset[str]:
    return frozenset(a for a, row in ROLE_TABLE.items() if role in row.roles)


def key_actions(scope: str, creator_role: str | None) -> frozenset[str]:
    """What an API key may do: its scope's actions that its creator's current role also allows."""
    return SCOPE_ACTIONS.get(scope, frozenset()) & actions_for(creator_role)


def key_can(scope: str, creator_role: str | None, action: str) -> bool:
    _row(action)
    return action in key_actions(scope, creator_role)


def key_power_note(scope: str, creator_role: str | None) -> str:
    """Why a key can do less than its scope says ('' when it can do all of it): its creator's
    current role (``None``: the creator is no longer on the team, so the key is refused)."""
    if creator_role is None:
        return "Refused: its creator is no longer on the team."
    lost = SCOPE_ACTIONS.get(scope, frozenset()) - key_actions(scope, creator_role)
    if not lost:
        return ""
    doing = ", ".join(ROLE_TABLE[a].doing for a in sorted(lost))
    return f"Limited to its creator's role ({Role(creator_role).label.lower()}): cannot {doing}."


def scopes_for(role: str | None) -> list[str]:
    """The key scopes a member with ``role`` may issue: those granting nothing beyond the role."""
    return [scope for scope in SCOPE_ACTIONS if scope_fits(scope, role)]


def scope_fits(scope: str, role: str | None) -> bool:
    """A scope fits a role when every write it opens is one the role may do somewhere.

    The write scope bundles all API writes; a developer's write key is still useful (payment
    links) and is limited at use to what the developer may do, so a scope fits when the role
    may do at least one of its writes and all of its reads.
    """
    actions = SCOPE_ACTIONS.get(scope, frozenset())
    allowed = actions_for(role)
    reads = actions & SCOPE_ACTIONS[ApiKey.Scope.READ]
    writes = actions - reads
    return reads <= allowed and (not writes or bool(writes & allowed))


def key_refusal(creator_role: str | None, action: str) -> str:
    """The sentence shown when an API key's creator's current role does not allow ``action``."""
    row = _row(action)
    label = Role(creator_role).label.lower() if creator_role in Role.values else "no longer on the team"
    return (
        f"This API key acts within its creator's current role ({label}), which does not allow it to "
        f"{row.doing}; only {row.allowed_text} can."
    )


def refusal(role: str | None, action: str) -> str:
    """The sentence shown when ``role`` may not do ``action``."""
    row = _row(action)
    if role not in Role.values:
        return f"Only members of this merchant's team can {row.doing}."
    label = Role(role).label.lower()
    return f"Your role ({label}) does not allow you to {row.doing}; only {row.allowed_text} can."
