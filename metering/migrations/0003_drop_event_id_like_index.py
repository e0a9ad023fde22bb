from django.db import migrations

# Django gives every varchar primary key a second btree with varchar_pattern_ops for LIKE
# 'prefix%' lookups. Nothing queries event ids by prefix (admin search is exact), and the extra
# index cost ~15% of the database CPU of an event insert. Found by name, whatever its hash.
DROP = """
DO $$
DECLARE name text;
BEGIN
    FOR name IN SELECT i.relname FROM pg_index x
                JOIN pg_class i ON i.oid = x.indexrelid
                JOIN pg_class t ON t.oid = x.indrelid
                WHERE t.relname = 'metering_event' AND i.relname LIKE 'metering_event_event_id_%_like'
    LOOP
        EXECUTE format('DROP INDEX %I', name);
    END LOOP;
END $$;
"""
RESTORE = ("CREATE INDEX IF NOT EXISTS metering_event_event_id_a2e57886_like "
           "ON metering_event (event_id varchar_pattern_ops);")


class Migration(migrations.Migration):
    """Ingestion: drop the unused LIKE index on event ids (the primary key still dedupes)."""

    dependencies = [("metering", "0002_eventversion_append_only")]

    operations = [migrations.RunSQL(DROP, RESTORE)]
