from django.db import migrations


class Migration(migrations.Migration):
    """Room on each rollup page for the next version of its rows.

    Every compaction updates the same (meter, customer, hour/day, group) rows again (ON CONFLICT
    DO UPDATE). With full pages those updates are not HOT: each one inserts new entries into
    both indexes. With free space on the page they stay HOT (no index writes) and the old
    versions are pruned in place.
    """

    dependencies = [("metering", "0003_drop_event_id_like_index")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE metering_usagerollup SET (fillfactor = 50); "
            "ALTER TABLE metering_uniquevaluerollup SET (fillfactor = 70);",
            "ALTER TABLE metering_usagerollup RESET (fillfactor); "
            "ALTER TABLE metering_uniquevaluerollup RESET (fillfactor);",
        ),
    ]
