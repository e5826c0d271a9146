"""Staff roles are Django groups whose permissions are declared here.

Other apps add their own permissions to roles from their ``AppConfig.ready``
with :func:`grant`, so this module never imports them. After every migrate the
groups are brought exactly in line with the declarations.
"""

from __future__ import annotations

from collections import defaultdict

COMPLIANCE_ANALYST = "compliance_analyst"
COMPLIANCE_SUPERVISOR = "compliance_supervisor"
PRIVACY_OFFICER = "privacy_officer"
SECURITY_OFFICER = "security_officer"

STAFF_ROLES: dict[str, str] = {
    COMPLIANCE_ANALYST: "Compliance analyst",
    COMPLIANCE_SUPERVISOR: "Compliance supervisor",
    PRIVACY_OFFICER: "Privacy officer",
    SECURITY_OFFICER: "Security officer",
}

_grants: dict[str, set[str]] = defaultdict(set)


def grant(role: str, *permissions: str) -> None:
    """Declare that ``role`` holds ``permissions`` (``"app_label.codename"``)."""
    if role not in STAFF_ROLES:
        raise ValueError(f"unknown staff role {role!r}")
    _grants[role].update(permissions)


for _role in STAFF_ROLES:
    grant(_role, "accounts.access_staff_area")
grant(SECURITY_OFFICER, "security.view_audit_log")
grant(COMPLIANCE_SUPERVISOR, "security.view_audit_log")
grant(SECURITY_OFFICER, "security.manage_keys")
# Revealing a person's full personal data (each reveal needs a reason and is audited).
grant(PRIVACY_OFFICER, "security.reveal_pii")
grant(COMPLIANCE_SUPERVISOR, "security.reveal_pii")


def declared_permissions(role: str) -> frozenset[str]:
    return frozenset(_grants[role])


def sync_staff_groups() -> None:
    """Create each staff group and give it exactly its declared permissions."""
    from django.contrib.auth.models import Group, Permission

    for role in STAFF_ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        wanted = []
        for dotted in sorted(_grants[role]):
            app_label, codename = dotted.split(".", 1)
            perm = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if perm is not None:
                wanted.append(perm)
        group.permissions.set(wanted)


def staff_roles_of(user: object) -> list[str]:
    """The staff role names the user holds (empty for merchant users)."""
    groups = getattr(user, "groups", None)
    if groups is None:
        return []
    return [name for name in groups.values_list("name", flat=True) if name in STAFF_ROLES]
