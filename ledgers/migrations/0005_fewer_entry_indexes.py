"""Fewer indexes on the tables every credit write inserts into.

- ``ledgers_ledgerentry.ledger_id`` and ``.customer_id`` lose their own indexes: the unique
  (ledger_id, sequence_number) and the (customer_id, created_at, id) indexes lead with them.
- The ``varchar_pattern_ops`` ("_like") indexes Django adds beside every indexed varchar column
  serve only LIKE 'prefix%' queries, which nothing runs on ids: they go for the entries' id,
  credit_block_id and hold_id and the audit log's id and api_key_id. (Those of ledger_id and
  customer_id go with their indexes above.)
"""

from django.db import migrations, models

LIKE_INDEXES = [("ledgers_ledgerentry", "id"), ("ledgers_ledgerentry", "credit_block_id"),
                ("ledgers_ledgerentry", "hold_id"), ("ledgers_auditlog", "id"),
                ("ledgers_auditlog", "api_key_id")]


def _like_name(schema_editor, table: str, column: str) -> str:
    return schema_editor._create_index_name(table, [column], suffix="_like")


def drop_like_indexes(apps, schema_editor):
    for table, column in LIKE_INDEXES:
        schema_editor.execute(
            f"DROP INDEX IF EXISTS {schema_editor.quote_name(_like_name(schema_editor, table, column))}")


def create_like_indexes(apps, schema_editor):
    for table, column in LIKE_INDEXES:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS "
            f"{schema_editor.quote_name(_like_name(schema_editor, table, column))} "
            f"ON {schema_editor.quote_name(table)} ({schema_editor.quote_name(column)} "
            "varchar_pattern_ops)")


class Migration(migrations.Migration):
    dependencies = [("ledgers", "0004_ledgerentry_append_only")]

    operations = [
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
        migrations.RunPython(drop_like_indexes, create_like_indexes),
    ]
