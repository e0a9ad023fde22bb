from django.db import migrations

FORBID_FUNCTION = """
CREATE OR REPLACE FUNCTION billing_forbid_mutation() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""


class Migration(migrations.Migration):
    """A shared trigger function for append-only tables (audit log here, ledger entries later)."""

    dependencies = [("ledgers", "0001_initial")]

    operations = [
        migrations.RunSQL(FORBID_FUNCTION, "DROP FUNCTION IF EXISTS billing_forbid_mutation()"),
        migrations.RunSQL(
            "CREATE TRIGGER auditlog_append_only BEFORE UPDATE OR DELETE ON ledgers_auditlog "
            "FOR EACH ROW EXECUTE FUNCTION billing_forbid_mutation();",
            "DROP TRIGGER IF EXISTS auditlog_append_only ON ledgers_auditlog;",
        ),
    ]
