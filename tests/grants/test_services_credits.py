"""Credit ledger services: burn order, chained balances, debt, holds, voids, amendments."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing_project.errors import Conflict, InvalidInput, NotFound
from grants import selectors, services
from grants.models import CreditBlock
from ledgers.models import AuditLog, HoldSettlement, Ledger, LedgerEntry
from tests.grants.factories import CustomerFactory, decrement, increment

pytestmark = pytest.mark.django_db
D = Decimal


def entries(customer):
    return list(LedgerEntry.objects.filter(customer=customer).order_by("ledger",
                                                                        "sequence_number"))


def assert_chain(customer):
    by_ledger = {}
    for entry in entries(customer):
        by_ledger.setdefault(entry.ledger_id, []).append(entry)
    for rows in by_ledger.values():
        assert [e.sequence_number for e in rows] == list(range(1, len(rows) + 1))
        for previous, entry in zip(rows, rows[1:], strict=False):
            assert entry.starting_balance == previous.ending_balance
        ledger = Ledger.objects.get(pk=rows[0].ledger_id)
        assert ledger.balance == rows[-1].ending_balance
        open_blocks = CreditBlock.objects.filter(ledger=ledger, status__in=services.OPEN)
        assert ledger.balance == sum((b.balance for b in open_blocks), D(0)) - ledger.debt


def test_decrement_burns_in_burn_down_order_one_entry_per_block():
    customer = CustomerFactory()
    now = timezone.now()
    paid = increment(customer, 100, per_unit_cost_basis=D("0.5"))
    trial = increment(customer, 30, expiry_date=now + timedelta(days=7), per_unit_cost_basis=D(0))
    later = increment(customer, 20, expiry_date=now + timedelta(days=30))
    urgent = increment(customer, 10, priority=0)
    last = decrement(customer, 65, description="usage")
    burned = [(e.credit_block_id, e.amount) for e in entries(customer)
              if e.entry_type == "decrement"]
    assert burned == [(urgent.id, D(10)), (trial.id, D(30)), (later.id, D(20)),
                      (paid.id, D(5))]
    assert last.credit_block_id == paid.id
    assert last.ending_balance == D(95)
    assert_chain(customer)
    balance = selectors.credit_balance(customer=customer)
    assert balance.balance == D(95) and balance.available == D(95)


def test_negative_balance_is_paid_off_first_by_the_next_increment():
    customer = CustomerFactory()
    increment(customer, 10)
    last = decrement(customer, 25)
    assert last.credit_block_id is None and last.amount == D(15)
    assert last.ending_balance == D(-15)
    assert Ledger.objects.get(customer=customer).debt == D(15)
    entry = services.credit_increment(customer=customer, amount=D(40), actor="t")
    assert (entry.starting_balance, entry.ending_balance) == (D(-15), D(25))
    block = CreditBlock.objects.get(pk=entry.credit_block_id)
    assert block.balance == D(25) and block.debt_paid == D(15)
    assert Ledger.objects.get(customer=customer).debt == 0
    assert selectors.credit_balance(customer=customer).balance == D(25)
    assert_chain(customer)


def test_future_block_pays_debt_when_it_becomes_effective():
    customer = CustomerFactory()
    decrement(customer, 5)
    soon = timezone.now() + timedelta(seconds=1)
    block = increment(customer, 20, effective_date=soon)
    assert selectors.credit_balance(customer=customer).balance == D(-5)
    assert selectors.credit_balance(customer=customer,
                                    as_of=soon + timedelta(seconds=1)).balance == D(15)
    entries_after = services.credit_ledger_settle(
        ledger_id=block.ledger_id, at=soon + timedelta(seconds=1))
    assert entries_after == []
    block.refresh_from_db()
    assert block.balance == D(15) and block.debt_paid == D(5)
    assert_chain(customer)


def test_no_negative_balance_means_409_and_nothing_written():
    customer = CustomerFactory(allow_negative_balance=False)
    increment(customer, 10)
    before = entries(customer)
    with pytest.raises(Conflict) as info:
        decrement(customer, D("10.5"))
    assert info.value.code == "insufficient_balance"
    assert entries(customer) == before
    decrement(customer, 10)
    assert selectors.credit_balance(customer=customer).balance == 0


def test_holds_reserve_then_commit_or_release():
    customer = CustomerFactory(allow_negative_balance=False)
    block = increment(customer, 100)
    hold = services.credit_hold_create(customer=customer, amount=D(60), actor="t")
    assert hold.entry_status == "pending" and hold.starting_balance == hold.ending_balance
    balance = selectors.credit_balance(customer=customer)
    assert (balance.balance, balance.pending, balance.available) == (D(100), D(60), D(40))
    with pytest.raises(Conflict):
        decrement(customer, 41)
    with pytest.raises(Conflict):
        services.credit_hold_create(customer=customer, amount=D(41), actor="t")
    committed = services.credit_hold_commit(customer=customer, entry_id=hold.pk, actor="t")
    assert committed.hold_id == hold.pk and committed.credit_block_id == block.id
    assert committed.ending_balance == D(40)
    with pytest.raises(Conflict) as info:
        services.credit_hold_commit(customer=customer, entry_id=hold.pk, actor="t")
    assert info.value.code == "hold_already_settled"
    second = services.credit_hold_create(customer=customer, amount=D(40), actor="t")
    services.credit_hold_release(customer=customer, entry_id=second.pk, actor="t")
    assert HoldSettlement.objects.get(hold=second).outcome == "released"
    balance = selectors.credit_balance(customer=customer)
    assert (balance.balance, balance.pending) == (D(40), D(0))
    with pytest.raises(Conflict):
        services.credit_hold_release(customer=customer, entry_id=second.pk, actor="t")
    with pytest.raises(Conflict) as info:
        services.credit_hold_commit(customer=customer, entry_id=committed.pk, actor="t")
    assert info.value.code == "entry_not_pending"
    assert_chain(customer)


def test_void_writes_initiated_then_void_and_is_not_retroactive():
    customer = CustomerFactory()
    block = increment(customer, 50)
    decrement(customer, 20)
    entry = services.credit_block_void(customer=customer, block_id=block.id, actor="t",
                                       void_reason="refund", reason="customer refund")
    initiated, void = entries(customer)[-2:]
    assert initiated.entry_type == "void_initiated" and initiated.amount == D(30)
    assert initiated.starting_balance == initiated.ending_balance == D(30)
    assert void == entry and void.void_amount == D(30) and void.ending_balance == 0
    assert void.void_reason == "refund"
    block.refresh_from_db()
    assert block.status == "voided" and block.balance == 0 and block.voided_at
    with pytest.raises(Conflict) as info:
        services.credit_block_void(customer=customer, block_id=block.id, actor="t")
    assert info.value.code == "block_already_voided"
    # the void is not retroactive: the burned 20 stays burned, new usage is debt
    decrement(customer, 5)
    assert selectors.credit_balance(customer=customer).balance == D(-5)
    assert AuditLog.objects.filter(action="credits.void", reason="customer refund").exists()
    assert_chain(customer)


def test_partial_void_leaves_the_block_active():
    customer = CustomerFactory()
    block = increment(customer, 50)
    services.credit_block_void(customer=customer, block_id=block.id, amount=D(20), actor="t")
    block.refresh_from_db()
    assert block.status == "active" and block.balance == D(30)
    with pytest.raises(InvalidInput):
        services.credit_block_void(customer=customer, block_id=block.id, amount=D(31),
                                   actor="t")


def test_amendment_returns_credits_up_to_the_initial_amount():
    customer = CustomerFactory()
    block = increment(customer, 50)
    decrement(customer, 20)
    entry = services.credit_block_amend(customer=customer, block_id=block.id, amount=D(15),
                                        actor="t")
    assert (entry.starting_balance, entry.ending_balance) == (D(30), D(45))
    before = entries(customer)
    with pytest.raises(InvalidInput) as info:
        services.credit_block_amend(customer=customer, block_id=block.id, amount=D(6),
                                    actor="t")
    assert info.value.code == "amendment_exceeds_initial_amount"
    assert entries(customer) == before
    assert_chain(customer)


def test_expiration_change_moves_credits_to_a_new_block():
    customer = CustomerFactory()
    now = timezone.now()
    block = increment(customer, 50, expiry_date=now + timedelta(days=3),
                      per_unit_cost_basis=D("0.2"))
    target = now + timedelta(days=30)
    entry = services.credit_block_change_expiry(customer=customer, block_id=block.id,
                                                amount=D(20), target_expiry_date=target,
                                                actor="t")
    assert entry.entry_type == "expiration_change" and entry.credit_block_id == block.id
    assert entry.starting_balance == entry.ending_balance == D(50)
    assert entry.new_block_expiry_date == target
    new = CreditBlock.objects.get(source_block=block)
    assert (new.balance, new.expires_at, new.per_unit_cost_basis) == (D(20), target, D("0.2"))
    block.refresh_from_db()
    assert block.balance == D(30)
    with pytest.raises(InvalidInput) as info:
        services.credit_block_change_expiry(customer=customer, block_id=block.id,
                                            target_expiry_date=now - timedelta(days=1),
                                            actor="t")
    assert info.value.code == "expiry_in_past"
    by_date = services.credit_block_change_expiry(
        customer=customer, expiry_date=now + timedelta(days=3),
        target_expiry_date=now + timedelta(days=60), actor="t")
    assert by_date.credit_block_id == block.id and by_date.amount == D(30)
    assert_chain(customer)


def test_expired_block_gets_one_expiry_entry_even_when_settled_twice():
    customer = CustomerFactory()
    now = timezone.now()
    block = increment(customer, 40, expiry_date=now + timedelta(hours=1))
    increment(customer, 10)
    decrement(customer, 15)
    later = now + timedelta(hours=2)
    first = services.credit_ledger_settle(ledger_id=block.ledger_id, at=later)
    assert [(e.entry_type, e.amount) for e in first] == [("credit_block_expiry", D(25))]
    assert services.credit_ledger_settle(ledger_id=block.ledger_id, at=later) == []
    block.refresh_from_db()
    assert block.status == "expired" and block.balance == 0
    assert_chain(customer)


def test_backdated_block_counts_from_its_effective_date():
    customer = CustomerFactory()
    now = timezone.now()
    increment(customer, 10, effective_date=now - timedelta(days=10),
              expiry_date=now - timedelta(days=5))
    kinds = [e.entry_type for e in entries(customer)]
    assert kinds == ["increment", "credit_block_expiry"]
    assert selectors.credit_balance(customer=customer).balance == 0
    assert selectors.credit_balance(customer=customer,
                                    as_of=now - timedelta(days=7)).balance == D(10)
    assert selectors.credit_balance(customer=customer,
                                    as_of=now - timedelta(days=11)).balance == 0


def test_as_of_in_the_past_replays_entries():
    customer = CustomerFactory()
    increment(customer, 100)
    middle = timezone.now()
    decrement(customer, 30)
    assert selectors.credit_balance(customer=customer, as_of=middle).balance == D(100)
    assert selectors.credit_balance(customer=customer).balance == D(70)


def test_bad_input_writes_nothing():
    customer = CustomerFactory()
    other = CustomerFactory()
    block = increment(customer, 10)
    foreign = increment(other, 10)
    before = entries(customer)
    for amount in (D(0), D(-1), D("NaN")):
        with pytest.raises(InvalidInput):
            decrement(customer, amount)
    with pytest.raises(NotFound):
        services.credit_block_void(customer=customer, block_id="cb_missing", actor="t")
    with pytest.raises(NotFound):
        services.credit_block_void(customer=customer, block_id=foreign.id, actor="t")
    with pytest.raises(InvalidInput) as info:
        services.credit_block_void(customer=customer, block_id=block.id, currency="EUR",
                                   actor="t")
    assert info.value.code == "currency_mismatch"
    with pytest.raises(InvalidInput):
        services.credit_increment(customer=customer, amount=D(1), actor="t",
                                  invoice_settings={"auto_collection": True})
    assert entries(customer) == before


def test_filtered_block_only_takes_matching_priced_usage():
    customer = CustomerFactory()
    api_only = increment(customer, 50, priority=0,
                         filters=[{"field": "price_id", "operator": "includes",
                                   "values": ["price_api"]}])
    general = increment(customer, 50)
    decrement(customer, 10, price_id="price_storage")
    decrement(customer, 10, price_id="price_api")
    decrement(customer, 10)  # manual: filters do not apply
    api_only.refresh_from_db()
    general.refresh_from_db()
    assert (api_only.balance, general.balance) == (D(30), D(40))


def test_unsettled_usage_is_one_more_engine_input_to_the_balance(monkeypatch):
    customer = CustomerFactory()
    first = increment(customer, 10, priority=0)
    increment(customer, 10)
    seen = []

    def source(*, customer, currency, since, as_of):
        seen.append(currency)
        return D(12)

    monkeypatch.setattr(selectors, "UNSETTLED_USAGE_SOURCES", [source])
    balance = selectors.credit_balance(customer=customer)
    assert balance.balance == D(8) and seen == ["USD"]
    assert {b.block.pk: b.balance for b in balance.blocks}[first.pk] == 0


def test_invoiced_purchase_waits_for_payment_when_invoicing_is_installed(monkeypatch):
    customer = CustomerFactory()
    invoices, refunds = [], []
    monkeypatch.setattr(services, "CREDIT_PURCHASE_HOOKS", [lambda **kw: invoices.append(kw)])
    monkeypatch.setattr(services, "CREDIT_REFUND_HOOKS", [lambda **kw: refunds.append(kw)])
    decrement(customer, 5)
    block = increment(customer, 100, per_unit_cost_basis=D("0.5"),
                      invoice_settings={"auto_collection": True, "net_terms": 30})
    assert block.status == "pending_payment" and block.debt_paid == 0
    assert invoices[0]["block_id"] == block.pk and invoices[0]["amount"] == D(100)
    assert selectors.credit_balance(customer=customer).balance == D(-5)
    with pytest.raises(Conflict):  # not usable yet: a non-negative customer cannot spend it
        customer.allow_negative_balance = False
        decrement(customer, 1)
    customer.allow_negative_balance = True
    services.credit_block_activate(block_id=block.pk, actor="invoicing")
    services.credit_block_activate(block_id=block.pk, actor="invoicing")  # idempotent
    block.refresh_from_db()
    assert block.status == "active" and block.balance == D(95) and block.debt_paid == D(5)
    assert selectors.credit_balance(customer=customer).balance == D(95)
    services.credit_block_void(customer=customer, block_id=block.pk, amount=D(10),
                               void_reason="refund", actor="t")
    assert refunds == [{"block_id": block.pk, "credits": D(10), "actor": "t",
                        "reason": "refund"}]
    manual = increment(customer, 1, per_unit_cost_basis=D(1),
                       invoice_settings={"auto_collection": False})
    assert manual.status == "active"
    assert_chain(customer)


def test_without_invoicing_an_invoiced_purchase_is_active(monkeypatch):
    monkeypatch.setattr(services, "CREDIT_PURCHASE_HOOKS", [])
    customer = CustomerFactory()
    block = increment(customer, 10, per_unit_cost_basis=D(1),
                      invoice_settings={"auto_collection": True})
    assert block.status == "active" and block.invoice_settings["auto_collection"] is True
