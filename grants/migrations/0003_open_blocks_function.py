from django.db import migrations

# PL/pgSQL (its plan is cached per connection) and VOLATILE: its query takes a fresh snapshot
# when it runs, so called LATERAL after `SELECT ... FOR NO KEY UPDATE` of the ledger row in
# the same statement, it reads the blocks as committed by the previous lock holder
# (grants.services._lock_and_load).
OPEN_BLOCKS = """
CREATE FUNCTION grants_open_blocks(p_ledger_id varchar) RETURNS SETOF grants_creditblock
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY SELECT * FROM grants_creditblock
        WHERE ledger_id = p_ledger_id AND status IN ('active', 'pending_payment');
END
$$;
"""


class Migration(migrations.Migration):
    """A function that reads a ledger's open blocks with a snapshot taken after its lock."""

    dependencies = [("grants", "0002_credit_block_links")]

    operations = [
        migrations.RunSQL(OPEN_BLOCKS, "DROP FUNCTION IF EXISTS grants_open_blocks(varchar);"),
    ]
