"""Staff credit actions: confirmation page, required reason, permissions, audit, services."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from grants.models import CreditBlock
from ledgers.models import AuditLog, Ledger, LedgerEntry
from tests.grants.factories import CustomerFactory, increment

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(client):
    user = get_user_model().objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=[
        "view_creditblock", "view_ledger", "view_ledgerentry"]))
    client.force_login(user)
    return client


def act(client, url, action, ids, **data):
    return client.post(url, {"action": action, "_selected_action": ids, **data})


def test_ledger_page_shows_balance_blocks_and_entries(staff_client):
    customer = CustomerFactory()
    block = increment(customer, 25)
    ledger = Ledger.objects.get(customer=customer)
    response = staff_client.get(f"/admin/ledgers/ledger/{ledger.pk}/change/")
    assert response.status_code == 200
    assert block.pk.encode() in response.content and b"increment" in response.content
    listing = staff_client.get("/admin/ledgers/ledger/")
    assert listing.status_code == 200 and b"25" in listing.content
    assert staff_client.get("/admin/ledgers/ledgerentry/").status_code == 200
    assert staff_client.get(f"/admin/grants/creditblock/{block.pk}/change/").status_code == 200


def test_increment_needs_confirmation_and_reason_then_is_audited(staff_client):
    customer = CustomerFactory()
    increment(customer, 1)
    ledger = Ledger.objects.get(customer=customer)
    url = "/admin/ledgers/ledger/"
    page = act(staff_client, url, "increment_credits", [ledger.pk])
    assert page.status_code == 200 and b"reason" in page.content
    missing = act(staff_client, url, "increment_credits", [ledger.pk], confirm="yes",
                  amount="10", reason=" ")
    assert missing.status_code == 200
    assert LedgerEntry.objects.filter(customer=customer).count() == 1
    done = act(staff_client, url, "increment_credits", [ledger.pk], confirm="yes",
               amount="10", reason="goodwill")
    assert done.status_code == 302
    ledger.refresh_from_db()
    assert ledger.balance == D(11)
    audit = AuditLog.objects.get(action="credits.increment", reason="goodwill")
    assert audit.actor == "user:boss"
    act(staff_client, url, "decrement_credits", [ledger.pk], confirm="yes", amount="4",
        reason="correction")
    ledger.refresh_from_db()
    assert ledger.balance == D(7)


def test_block_actions_void_amend_change_expiry(staff_client):
    customer = CustomerFactory()
    block = increment(customer, 30)
    url = "/admin/grants/creditblock/"
    from grants.services import credit_decrement
    credit_decrement(customer=customer, amount=D(10), actor="t")
    act(staff_client, url, "amend_blocks", [block.pk], confirm="yes", amount="5",
        reason="undo usage")
    block.refresh_from_db()
    assert block.balance == D(25)
    too_much = act(staff_client, url, "amend_blocks", [block.pk], confirm="yes", amount="50",
                   reason="oops")
    assert too_much.status_code == 200 and b"amendment_exceeds_initial_amount" in too_much.content
    act(staff_client, url, "change_expiry", [block.pk], confirm="yes",
        target_expiry_date="2099-01-01 00:00:00", amount="5", reason="extend")
    assert CreditBlock.objects.filter(source_block=block).exists()
    act(staff_client, url, "void_blocks", [block.pk], confirm="yes", void_reason="refund",
        reason="refund requested")
    block.refresh_from_db()
    assert block.status == "voided"
    assert AuditLog.objects.filter(action="credits.void", reason="refund requested").exists()
    again = act(staff_client, url, "void_blocks", [block.pk], confirm="yes",
                reason="twice")
    assert b"block_already_voided" in again.content


def test_view_only_staff_cannot_run_credit_actions(viewer_client):
    customer = CustomerFactory()
    block = increment(customer, 30)
    assert viewer_client.get("/admin/grants/creditblock/").status_code == 200
    response = act(viewer_client, "/admin/grants/creditblock/", "void_blocks", [block.pk],
                   confirm="yes", reason="sneaky")
    block.refresh_from_db()
    assert block.status == "active"
    assert not AuditLog.objects.filter(action="credits.void").exists()
    assert response.status_code in (200, 302)


def test_entries_cannot_be_changed_or_deleted_in_admin(staff_client):
    customer = CustomerFactory()
    increment(customer, 3)
    entry = LedgerEntry.objects.get(customer=customer)
    assert staff_client.post(f"/admin/ledgers/ledgerentry/{entry.pk}/delete/").status_code == 403
    response = staff_client.post(f"/admin/ledgers/ledgerentry/{entry.pk}/change/",
                                 {"amount": "99"})
    assert response.status_code == 403
    entry.refresh_from_db()
    assert entry.amount == D(3)


def test_new_customers_get_a_ledger_staff_can_credit(staff_client, api):
    response = api.post("/v1/customers", {"name": "New", "email": "new@example.com",
                                          "currency": "eur"})
    ledger = Ledger.objects.get(customer_id=response.json()["id"])
    assert ledger.currency == "EUR" and ledger.balance == 0
    act(staff_client, "/admin/ledgers/ledger/", "increment_credits", [ledger.pk],
        confirm="yes", amount="7", reason="welcome credit")
    ledger.refresh_from_db()
    assert ledger.balance == D(7)
