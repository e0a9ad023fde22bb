from io import StringIO

import pytest

from grants import demo, selectors
from ledgers import demo as customer_demo
from ledgers.models import Customer, LedgerEntry

pytestmark = pytest.mark.django_db


def test_demo_credits_are_idempotent_and_cover_every_entry_kind():
    customer_demo.load(stdout=StringIO())
    demo.load(stdout=StringIO())
    count = LedgerEntry.objects.count()
    demo.load(stdout=StringIO())
    assert LedgerEntry.objects.count() == count
    acme = Customer.objects.get(external_customer_id="acme")
    kinds = set(LedgerEntry.objects.filter(customer=acme).values_list("entry_type", flat=True))
    assert kinds >= {"increment", "decrement", "credit_block_expiry", "void_initiated", "void",
                     "expiration_change"}
    assert LedgerEntry.objects.filter(customer=acme, entry_status="pending").exists()
    balance = selectors.credit_balance(customer=acme)
    assert balance.balance == 557.5 and balance.pending == 30
