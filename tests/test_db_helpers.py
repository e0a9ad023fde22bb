"""billing_project.db: prepared statements and fast model loading on the hot paths."""

from decimal import Decimal

import pytest
from django.db import transaction
from django.forms.models import model_to_dict

from billing_project.db import columns, execute_prepared, model_from_row, models_from_rows
from grants.models import CreditBlock
from ledgers.models import ApiKey
from tests.grants.factories import CustomerFactory, increment

pytestmark = pytest.mark.django_db


def _all_values(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


@pytest.mark.parametrize("binary", [False, True])
def test_models_from_rows_equal_orm_instances(binary):
    customer = CustomerFactory()
    increment(customer, "12.5", expiry_date=None, per_unit_cost_basis=Decimal("0.25"),
              metadata={"k": "v", "n": 1.5}, filters=[{"field": "price_id",
                                                       "operator": "includes",
                                                       "values": ["p1"]}])
    increment(customer, "3")
    rows = execute_prepared(
        f"SELECT {columns(CreditBlock)} FROM grants_creditblock WHERE customer_id = %s "
        "ORDER BY id", [customer.pk], fetch=True, binary=binary)
    loaded = models_from_rows(CreditBlock, rows)
    expected = list(CreditBlock.objects.filter(customer=customer).order_by("id"))
    assert [_all_values(b) for b in loaded] == [_all_values(b) for b in expected]
    assert {"k": "v", "n": Decimal("1.5")} in [b.metadata for b in loaded]
    assert all(not b._state.adding and b._state.db == "default" for b in loaded)
    # A loaded instance behaves as an ORM one: relations resolve, it saves and reloads.
    block = loaded[0]
    assert block.customer == customer
    block.metadata = {"changed": True}
    block.save(update_fields=["metadata"])
    block.refresh_from_db()
    assert block.metadata == {"changed": True}
    assert model_to_dict(block) == model_to_dict(CreditBlock.objects.get(pk=block.pk))


def test_model_from_row_takes_extra_trailing_values():
    key = ApiKey.objects.create(name="k", prefix="p1", key_hash="h" * 64, scopes=["read"])
    row = execute_prepared(f"SELECT {columns(ApiKey)}, 42 FROM ledgers_apikey WHERE id = %s",
                           [key.pk], fetch=True)[0]
    assert _all_values(model_from_row(ApiKey, row)) == _all_values(key)


def test_prepared_statements_survive_a_rollback(api):
    """psycopg deallocates every prepared statement after a ROLLBACK (here: to the savepoint
    of the failed atomic block); the hot paths prepare again instead of failing (an explicit
    SQL PREPARE once did)."""
    customer = CustomerFactory()
    assert api.get(f"/v1/customers/{customer.pk}").status_code == 200
    with pytest.raises(RuntimeError), transaction.atomic():
        execute_prepared("SELECT 1", [])
        raise RuntimeError
    assert execute_prepared("SELECT count(*) FROM pg_prepared_statements", [],
                            fetch=True) == [(1,)]  # only this statement: the rest were dropped
    assert api.get(f"/v1/customers/{customer.pk}").status_code == 200
    assert execute_prepared("SELECT %s::int", [7], fetch=True) == [(7,)]


def test_new_instance_equals_the_model_constructor():
    from datetime import UTC, datetime

    from billing_project.db import new_instance
    from ledgers.models import AuditLog, LedgerEntry

    customer = CustomerFactory()
    block = increment(customer, "5")
    ledger = block.ledger
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    values = dict(id="le_fixed", ledger=ledger, customer_id=customer.pk, currency="USD",
                  sequence_number=9, entry_type="decrement", amount=Decimal("1.5"),
                  starting_balance=Decimal(5), ending_balance=Decimal("3.5"),
                  credit_block=block, hold=None, metadata={"a": 1}, created_at=at)
    fast, regular = new_instance(LedgerEntry, **values), LedgerEntry(**values)
    assert _all_values(fast) == _all_values(regular)
    assert fast.credit_block is block and fast.ledger is ledger  # related objects cached
    assert fast._state.adding and fast._state.db == regular._state.db
    # defaults as the constructor's: a fresh id each time, entry_status, description None
    audit = new_instance(AuditLog, actor="system", action="a", target_type="t",
                         target_id="1")
    other = AuditLog(actor="system", action="a", target_type="t", target_id="1")
    assert audit.id.startswith("aud_") and audit.id != other.id
    assert ({k: v for k, v in _all_values(audit).items() if k not in ("id", "created_at")}
            == {k: v for k, v in _all_values(other).items() if k not in ("id", "created_at")})
    assert new_instance(LedgerEntry).entry_status == "committed"
    audit.save(force_insert=True)
    assert AuditLog.objects.get(pk=audit.pk).target_id == "1"
    with pytest.raises(TypeError):
        new_instance(AuditLog, actor="system", no_such_field=1)
