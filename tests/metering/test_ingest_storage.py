"""Storage choices of the ingest path (migrations 0003 and 0004) stay in place."""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_event_ids_have_only_the_primary_key_index():
    """The varchar_pattern_ops copy Django adds to varchar primary keys is dropped: nothing
    looks event ids up by prefix, and every index is paid for by every ingested event."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes "
                       "WHERE tablename = 'metering_event' AND indexdef LIKE '%%(event_id%%'")
        rows = cursor.fetchall()
    assert [name for name, _ in rows] == ["metering_event_pkey"], rows


def test_rollup_pages_keep_room_for_hot_updates():
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, reloptions FROM pg_class WHERE relname IN "
                       "('metering_usagerollup', 'metering_uniquevaluerollup') ORDER BY 1")
        options = dict(cursor.fetchall())
    assert options == {"metering_uniquevaluerollup": ["fillfactor=70"],
                       "metering_usagerollup": ["fillfactor=50"]}
