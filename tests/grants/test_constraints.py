"""Every database invariant of the credit ledger, provoked directly."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, InternalError, connection, transaction
from django.utils import timezone

from grants.models import CreditBlock, TopUp
from ledgers.models import HoldSettlement, Ledger, LedgerEntry
from tests.grants.factories import CustomerFactory, increment

pytestmark = pytest.mark.django_db
D = Decimal


def violates(name, fn):
    with pytest.raises((IntegrityError, InternalError)) as info, transaction.atomic():
        fn()
    assert name in str(info.value), str(info.value)


@pytest.fixture
def block():
    customer = CustomerFactory()
    return increment(customer, 10)


def entry_kwargs(block, **overrides):
    ledger = block.ledger
    values = dict(ledger=ledger, customer=block.customer, currency=block.currency,
                  sequence_number=99, entry_type="increment", amount=D(1),
                  starting_balance=D(0), ending_balance=D(1), credit_block=block)
    values.update(overrides)
    return values


@pytest.mark.parametrize(("name", "overrides"), [
    ("ledgerentry_sequence_unique", {"sequence_number": 1, "entry_type": "amendment"}),
    ("ledgerentry_sequence_positive", {"sequence_number": 0, "entry_type": "amendment"}),
    ("ledgerentry_amount_positive", {"amount": D(0), "ending_balance": D(0),
                                     "entry_type": "amendment"}),
    ("ledgerentry_debt_non_negative", {"debt_after": D(-1), "entry_type": "amendment"}),
    ("ledgerentry_balance_arithmetic", {"ending_balance": D(5), "entry_type": "amendment"}),
    ("ledgerentry_only_decrements_pending", {"entry_status": "pending",
                                             "entry_type": "amendment"}),
    ("ledgerentry_block_required", {"credit_block": None, "entry_type": "amendment"}),
    ("ledgerentry_one_increment_per_block", {}),
    ("ledgerentry_one_expiry_per_block", {"entry_type": "credit_block_expiry",
                                          "ending_balance": D(-1)}),
])
def test_ledger_entry_constraints(block, name, overrides):
    if name == "ledgerentry_one_expiry_per_block":
        LedgerEntry.objects.create(**entry_kwargs(block, **overrides))
        overrides = {**overrides, "sequence_number": 100}
    violates(name, lambda: LedgerEntry.objects.create(**entry_kwargs(block, **overrides)))


def test_entries_and_settlements_are_append_only(block):
    entry = LedgerEntry.objects.get(credit_block=block)
    violates("append-only", lambda: LedgerEntry.objects.filter(pk=entry.pk).update(amount=2))
    violates("append-only", lambda: LedgerEntry.objects.filter(pk=entry.pk).delete())
    hold = LedgerEntry.objects.create(**entry_kwargs(
        block, entry_type="decrement", entry_status="pending", credit_block=None,
        ending_balance=D(0)))
    HoldSettlement.objects.create(hold=hold, outcome="released")
    violates("append-only", lambda: HoldSettlement.objects.filter(hold=hold).delete())
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ledgers_ledgerentry")
        assert cursor.fetchone()[0] == 2


@pytest.mark.parametrize(("name", "values"), [
    ("creditblock_balance_non_negative", {"balance": D(-1)}),
    ("creditblock_initial_amount_positive", {"initial_amount": D(0), "balance": D(0)}),
    ("creditblock_balance_within_initial", {"balance": D(11)}),
    ("creditblock_debt_paid_range", {"debt_paid": D(11)}),
    ("creditblock_cost_basis_non_negative", {"per_unit_cost_basis": D(-1)}),
    ("creditblock_expires_after_effective", {"expires_at": "effective"}),
    ("creditblock_voided_at_only_when_voided", {"voided_at": "now"}),
    ("creditblock_closed_blocks_empty", {"status": "expired"}),
])
def test_credit_block_constraints(block, name, values):
    values = {k: (block.effective_at if v == "effective" else timezone.now() if v == "now"
                  else v) for k, v in values.items()}
    violates(name, lambda: CreditBlock.objects.filter(pk=block.pk).update(**values))


def test_ledger_constraints(block):
    ledger = block.ledger
    violates("ledger_debt_non_negative",
             lambda: Ledger.objects.filter(pk=ledger.pk).update(debt=D(-1)))
    violates("ledger_pending_non_negative",
             lambda: Ledger.objects.filter(pk=ledger.pk).update(pending=D(-1)))
    violates("ledger_sequence_non_negative",
             lambda: Ledger.objects.filter(pk=ledger.pk).update(last_sequence_number=-1))
    violates("ledger_customer_currency_unique",
             lambda: Ledger.objects.create(customer=ledger.customer, currency=ledger.currency))
    violates("ledger_currency_not_blank",
             lambda: Ledger.objects.create(customer=ledger.customer, currency=""))


def test_top_up_constraints():
    customer = CustomerFactory()
    base = dict(customer=customer, currency="USD", threshold=D(10), amount=D(50),
                per_unit_cost_basis=D(1))
    TopUp.objects.create(**base)
    violates("topup_one_active_per_currency", lambda: TopUp.objects.create(**base))
    other = {**base, "currency": "EUR"}
    violates("topup_amount_positive", lambda: TopUp.objects.create(**{**other, "amount": 0}))
    violates("topup_threshold_non_negative",
             lambda: TopUp.objects.create(**{**other, "threshold": -1}))
    violates("topup_cost_basis_non_negative",
             lambda: TopUp.objects.create(**{**other, "per_unit_cost_basis": -1}))
    violates("topup_expiry_complete",
             lambda: TopUp.objects.create(**{**other, "expires_after": 3}))


def test_service_maps_duplicate_expiry_to_conflict(block):
    """A second writer that missed the first one's expiry entry collides, not doubles."""
    from billing_project.errors import Conflict
    from grants import services

    block.expires_at = timezone.now() + timedelta(seconds=1)
    CreditBlock.objects.filter(pk=block.pk).update(expires_at=block.expires_at)
    later = block.expires_at + timedelta(seconds=1)
    services.credit_ledger_settle(ledger_id=block.ledger_id, at=later)
    # Pretend the block were still open to a stale writer.
    CreditBlock.objects.filter(pk=block.pk).update(status="active", balance=D(10))
    with pytest.raises(Conflict) as info, transaction.atomic():
        services.credit_ledger_settle(ledger_id=block.ledger_id, at=later)
    assert info.value.code == "block_already_expired"


def test_a_hold_is_settled_once(block):
    hold = LedgerEntry.objects.create(**entry_kwargs(
        block, entry_type="decrement", entry_status="pending", credit_block=None,
        ending_balance=D(0)))
    HoldSettlement.objects.create(hold=hold, outcome="committed")
    violates("ledgers_holdsettlement_pkey",
             lambda: HoldSettlement.objects.create(hold=hold, outcome="released"))
