from django.db import migrations


class Migration(migrations.Migration):
    """Credit ledger entries and hold settlements are append-only (trigger from 0002)."""

    dependencies = [("ledgers", "0003_credit_ledger"), ("grants", "0002_credit_block_links")]

    operations = [
        migrations.RunSQL(
            "CREATE TRIGGER ledgerentry_append_only BEFORE UPDATE OR DELETE ON ledgers_ledgerentry "
            "FOR EACH ROW EXECUTE FUNCTION billing_forbid_mutation();",
            "DROP TRIGGER IF EXISTS ledgerentry_append_only ON ledgers_ledgerentry;",
        ),
        migrations.RunSQL(
            "CREATE TRIGGER holdsettlement_append_only BEFORE UPDATE OR DELETE ON "
            "ledgers_holdsettlement FOR EACH ROW EXECUTE FUNCTION billing_forbid_mutation();",
            "DROP TRIGGER IF EXISTS holdsettlement_append_only ON ledgers_holdsettlement;",
        ),
    ]
