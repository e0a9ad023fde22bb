"""Fewer indexes on the tables every credit write inserts into.

- ``ledgers_ledgerentry.ledger_id`` and ``.customer_id`` lose their own indexes: the unique
  (ledger_id, sequence_number) and the (customer_id, created_at, id) indexes lead with them.
- The ``varchar_pattern_ops`` ("_like") indexes Django adds beside every indexed varchar column
  serve only LIKE 'prefix%' queries, which nothing runs on ids: they go for the entries' id,
  ledger_id, customer_id, credit_block_id and hold_id and the audit log's id and api_key_id.

Nine indexes in all, dropped CONCURRENTLY (the migration is not atomic), so credit writes go
on meanwhile; the foreign keys themselves are untouched (the model state only learns
``db_index=False``).
"""

from django.db import migrations, models

# (table, column, suffix): Django's names for a foreign key's index ("") and a varchar
# column's pattern-ops index ("_like"), as its schema editor made them.
INDEXES = [
    ("ledgers_ledgerentry", "ledger_id", ""), ("ledgers_ledgerentry", "ledger_id", "_like"),
    ("ledgers_ledgerentry", "customer_id", ""), ("ledgers_ledgerentry", "customer_id", "_like"),
    ("ledgers_ledgerentry", "id", "_like"), ("ledgers_ledgerentry", "credit_block_id", "_like"),
    ("ledgers_ledgerentry", "hold_id", "_like"),
    ("ledgers_auditlog", "id", "_like"), ("ledgers_auditlog", "api_key_id", "_like"),
]


def _name(schema_editor, table: str, column: str, suffix: str) -> str:
    return schema_editor.quote_name(schema_editor._create_index_name(table, [column],
                                                                     suffix=suffix))


def drop_indexes(apps, schema_editor):
    for table, column, suffix in INDEXES:
        schema_editor.execute(
            f"DROP INDEX CONCURRENTLY IF EXISTS {_name(schema_editor, table, column, suffix)}")


def create_indexes(apps, schema_editor):
    for table, column, suffix in INDEXES:
        ops = " varchar_pattern_ops" if suffix == "_like" else ""
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {_name(schema_editor, table, column, suffix)}"
            f" ON {schema_editor.quote_name(table)} ({schema_editor.quote_name(column)}{ops})")


class Migration(migrations.Migration):
    atomic = False  # DROP / CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [("ledgers", "0004_ledgerentry_append_only")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="ledgerentry", name="ledger",
                    field=models.ForeignKey(db_index=False, on_delete=models.deletion.PROTECT,
                                            related_name="entries", to="ledgers.ledger"),
                ),
                migrations.AlterField(
                    model_name="ledgerentry", name="customer",
                    field=models.ForeignKey(db_index=False, on_delete=models.deletion.PROTECT,
                                            related_name="+", to="ledgers.customer"),
                ),
            ],
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
        ),
    ]
