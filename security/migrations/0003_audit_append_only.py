"""The database refuses UPDATE and DELETE on the audit table; the chain head row.

PostgreSQL: a row trigger refuses UPDATE, and DELETE unless the transaction set
``fp.audit_delete`` (``security.audit.allow_audit_deletion``: archiving and
``flush``); a statement trigger does the same for TRUNCATE.

SQLite: a trigger refuses UPDATE; DELETE is refused unless the connection's
``fp_audit_delete_allowed()`` function (registered by the security app on every
connection) says the archiving or flush path is active. A connection without
the function (the sqlite3 shell) cannot delete at all.
"""

from django.db import migrations

PG_FORWARD = [
    """
    CREATE OR REPLACE FUNCTION security_auditevent_guard() RETURNS trigger AS $$
    BEGIN
        IF TG_OP IN ('DELETE', 'TRUNCATE')
           AND coalesce(current_setting('fp.audit_delete', true), '') IN ('archive', 'flush') THEN
            IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'security_auditevent is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$ LANGUAGE plpgsql;
    """,
    """
    CREATE TRIGGER security_auditevent_append_only
    BEFORE UPDATE OR DELETE ON security_auditevent
    FOR EACH ROW EXECUTE FUNCTION security_auditevent_guard();
    """,
    """
    CREATE TRIGGER security_auditevent_no_truncate
    BEFORE TRUNCATE ON security_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION security_auditevent_guard();
    """,
]
PG_BACKWARD = [
    "DROP TRIGGER IF EXISTS security_auditevent_no_truncate ON security_auditevent;",
    "DROP TRIGGER IF EXISTS security_auditevent_append_only ON security_auditevent;",
    "DROP FUNCTION IF EXISTS security_auditevent_guard();",
]
SQLITE_FORWARD = [
    """
    CREATE TRIGGER security_auditevent_no_update BEFORE UPDATE ON security_auditevent
    BEGIN
        SELECT RAISE(ABORT, 'security_auditevent is append-only: UPDATE refused');
    END;
    """,
    """
    CREATE TRIGGER security_auditevent_no_delete BEFORE DELETE ON security_auditevent
    WHEN fp_audit_delete_allowed() = 0
    BEGIN
        SELECT RAISE(ABORT, 'security_auditevent is append-only: DELETE refused');
    END;
    """,
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS security_auditevent_no_update;",
    "DROP TRIGGER IF EXISTS security_auditevent_no_delete;",
]


def _run(schema_editor, statements):
    for sql in statements:
        schema_editor.execute(sql, params=None)


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, PG_FORWARD)
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE_FORWARD)
    AuditEvent = apps.get_model("security", "AuditEvent")
    AuditChainHead = apps.get_model("security", "AuditChainHead")
    db = schema_editor.connection.alias
    last = AuditEvent.objects.using(db).order_by("-sequence").first()
    AuditChainHead.objects.using(db).get_or_create(
        id=1,
        defaults={
            "last_sequence": last.sequence if last else 0,
            "last_hash": last.hash if last else "0" * 64,
        },
    )


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, PG_BACKWARD)
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("security", "0002_keys_rotation_chain_head")]

    operations = [migrations.RunPython(forwards, backwards)]
