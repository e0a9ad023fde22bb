from django.db import migrations


class Migration(migrations.Migration):
    """Event history rows are never updated or deleted."""

    dependencies = [("metering", "0001_initial"), ("ledgers", "0002_append_only_audit_log")]

    operations = [
        migrations.RunSQL(
            "CREATE TRIGGER eventversion_append_only BEFORE UPDATE OR DELETE ON "
            "metering_eventversion FOR EACH ROW EXECUTE FUNCTION billing_forbid_mutation();",
            "DROP TRIGGER IF EXISTS eventversion_append_only ON metering_eventversion;",
        ),
    ]
