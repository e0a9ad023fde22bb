"""The entry and audit tables keep only the indexes their queries use (ledgers 0005): every
credit write inserts into both, and writes each of their indexes."""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def _indexes(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return {row[0].split(" USING ")[1] for row in cursor.fetchall()}


def test_ledger_entry_indexes():
    assert _indexes("ledgers_ledgerentry") == {
        "btree (id)",
        "btree (created_at, id)",
        "btree (customer_id, created_at, id)",
        "btree (ledger_id, sequence_number)",
        "btree (credit_block_id)",
        "btree (credit_block_id) WHERE ((entry_type)::text = 'credit_block_expiry'::text)",
        "btree (credit_block_id) WHERE ((entry_type)::text = 'increment'::text)",
        "btree (hold_id)",
    }


def test_audit_log_indexes():
    assert _indexes("ledgers_auditlog") == {
        "btree (id)", "btree (created_at, id)", "btree (target_type, target_id)",
        "btree (api_key_id)", "btree (user_id)",
    }
