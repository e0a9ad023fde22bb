"""The official `orb-billing` client works against the live server for credits."""

from datetime import date

import orb
import pytest

from ledgers.models import LedgerEntry
from tests.grants.factories import CustomerFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def orb_client(live_server, api_key):
    return orb.Orb(base_url=live_server.url + "/v1", api_key=api_key.raw, max_retries=0)


def test_ledger_entries_blocks_and_paging(orb_client):
    customer = CustomerFactory(external_customer_id="orb-credits", currency="USD")
    ledger = orb_client.customers.credits.ledger
    increment = ledger.create_entry(customer.id, entry_type="increment", amount=100,
                                    currency="USD", per_unit_cost_basis="0.25",
                                    expiry_date="2099-12-31", description="Purchased",
                                    metadata={"po": "1"})
    assert increment.entry_type == "increment"
    assert increment.ending_balance == 100
    block_id = increment.credit_block.id
    assert block_id.startswith("cb_")
    assert increment.credit_block.per_unit_cost_basis == "0.25"

    decrement = ledger.create_entry(customer.id, entry_type="decrement", amount=12.5,
                                    currency="USD", description="usage")
    assert decrement.entry_type == "decrement"
    assert (decrement.starting_balance, decrement.ending_balance) == (100, 87.5)

    change = ledger.create_entry(customer.id, entry_type="expiration_change", amount=7,
                                 block_id=block_id, target_expiry_date=date(2100, 1, 1),
                                 currency="USD")
    assert change.entry_type == "expiration_change"
    assert change.new_block_expiry_date.year == 2100

    amendment = ledger.create_entry(customer.id, entry_type="amendment", amount=2.5,
                                    block_id=block_id, currency="USD")
    assert amendment.entry_type == "amendment" and amendment.ending_balance == 90

    void = ledger.create_entry(customer.id, entry_type="void", amount=5, block_id=block_id,
                               void_reason="refund", currency="USD")
    assert void.entry_type == "void" and void.void_amount == 5
    assert void.void_reason == "refund"

    by_external = ledger.create_entry_by_external_id(
        "orb-credits", entry_type="increment", amount=1, currency="USD")
    assert by_external.ending_balance == 86

    for _ in range(4):
        ledger.create_entry(customer.id, entry_type="decrement", amount=1, currency="USD")
    hold = ledger.create_entry(customer.id, entry_type="decrement", amount=2, currency="USD",
                               extra_body={"entry_status": "pending"})
    assert hold.entry_status == "pending" and hold.starting_balance == hold.ending_balance
    first_page = ledger.list(customer.id, limit=3)
    assert len(first_page.data) == 3
    everything = list(ledger.list(customer.id, limit=3))
    count = LedgerEntry.objects.filter(customer=customer).count()
    assert len(everything) == count == len({e.id for e in everything})
    numbers = [e.ledger_sequence_number for e in everything]
    assert numbers == sorted(numbers, reverse=True) == list(range(count, 0, -1))
    assert {e.entry_type for e in everything} == {
        "increment", "decrement", "expiration_change", "amendment", "void_initiated", "void"}
    decrements = list(ledger.list(customer.id, entry_type="decrement"))
    assert len(decrements) == 6
    assert [e.id for e in ledger.list(customer.id, entry_status="pending")] == [hold.id]
    external = list(ledger.list_by_external_id("orb-credits", limit=5, currency="USD"))
    assert [e.id for e in external] == [e.id for e in everything]

    blocks = list(orb_client.customers.credits.list(customer.id, currency="USD"))
    assert {b.id for b in blocks} >= {block_id}
    by_id = {b.id: b for b in blocks}
    assert by_id[block_id].balance == 74  # 100 - 12.5 - 7 + 2.5 - 5 - 4
    assert by_id[block_id].maximum_initial_balance == 100
    external_blocks = list(orb_client.customers.credits.list_by_external_id("orb-credits"))
    assert {b.id for b in external_blocks} == {b.id for b in blocks}


def test_errors_map_to_orb_exceptions(orb_client):
    customer = CustomerFactory(allow_negative_balance=False)
    ledger = orb_client.customers.credits.ledger
    with pytest.raises(orb.ConflictError):
        ledger.create_entry(customer.id, entry_type="decrement", amount=1)
    with pytest.raises(orb.NotFoundError):
        ledger.create_entry(customer.id, entry_type="void", amount=1, block_id="cb_missing")
    with pytest.raises(orb.BadRequestError):
        ledger.create_entry(customer.id, entry_type="increment", amount=0)
    assert not LedgerEntry.objects.filter(customer=customer).exists()
