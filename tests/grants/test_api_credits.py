"""Credits API (API.md §4): ledger entries, blocks, balance, holds, top-ups, bad input."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing_project.api import format_timestamp, json_loads
from ledgers.models import AuditLog, LedgerEntry
from tests.conftest import assert_problem
from tests.grants.factories import CustomerFactory

pytestmark = pytest.mark.django_db
D = Decimal


def base(customer):
    return f"/v1/customers/{customer.id}/credits"


def post_entry(api, customer, **body):
    return api.post(f"{base(customer)}/ledger_entry", body)


def ledger_snapshot(customer):
    return list(LedgerEntry.objects.filter(customer=customer).values_list("pk", flat=True))


def test_increment_decrement_and_ledger_listing(api):
    customer = CustomerFactory(timezone="Europe/Paris")
    created = post_entry(api, customer, entry_type="increment", amount=100,
                         per_unit_cost_basis="0.5", expiry_date="2099-01-01",
                         description="Purchased", metadata={"po": "7"})
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["entry_type"] == "increment" and body["amount"] == 100
    assert body["starting_balance"] == 0 and body["ending_balance"] == 100
    assert body["currency"] == "USD" and body["ledger_sequence_number"] == 1
    assert body["customer"] == {"id": customer.id,
                                "external_customer_id": customer.external_customer_id}
    # A date is the start of that day in the customer's time zone.
    assert body["credit_block"]["expiry_date"] == "2098-12-31T23:00:00Z"
    assert body["credit_block"]["per_unit_cost_basis"] == "0.5"
    assert body["metadata"] == {"po": "7"} and body["created_invoices"] == []
    post_entry(api, customer, entry_type="increment", amount="0.1", priority=0)
    decrement = post_entry(api, customer, entry_type="decrement", amount="0.3")
    assert decrement.status_code == 201
    assert b'"amount":0.2,' in decrement.content
    body = json_loads(decrement.content)
    assert body["amount"] == D("0.2") and body["ending_balance"] == D("99.8")
    assert {"event_id", "invoice_id", "price_id"} <= set(body)
    listing = api.get(f"{base(customer)}/ledger").json()
    assert [e["ledger_sequence_number"] for e in listing["data"]] == [4, 3, 2, 1]
    assert listing["pagination_metadata"] == {"has_more": False, "next_cursor": None}
    only = api.get(f"{base(customer)}/ledger", {"entry_type": "decrement",
                                                "minimum_amount": "0.15"}).content
    only = json_loads(only)["data"]
    assert [e["amount"] for e in only] == [D("0.2")]
    assert AuditLog.objects.filter(action="credits.decrement").count() == 1


def test_blocks_and_balance_endpoints(api):
    customer = CustomerFactory()
    post_entry(api, customer, entry_type="increment", amount=10)
    block_id = post_entry(api, customer, entry_type="increment", amount=5,
                          expiry_date=format_timestamp(timezone.now() + timedelta(days=1))
                          ).json()["credit_block"]["id"]
    post_entry(api, customer, entry_type="decrement", amount=5)
    blocks = api.get(base(customer)).json()["data"]
    assert [b["balance"] for b in blocks] == [10]
    every = api.get(base(customer), {"include_all_blocks": "true"}).json()["data"]
    assert {(b["id"], b["status"]) for b in every} >= {(block_id, "depleted")}
    balance = api.get(f"{base(customer)}/balance").json()
    assert balance["balance"] == 10 and balance["available"] == 10
    assert balance["currency"] == "USD" and len(balance["blocks"]) == 2
    fetched = api.get(f"/v1/credit_blocks/{block_id}")
    assert fetched.json()["maximum_initial_balance"] == 5
    assert_problem(api.get("/v1/credit_blocks/cb_nope"), 404, "block_not_found")
    past = api.get(f"{base(customer)}/balance", {"as_of": "2020-01-01"}).json()
    assert past["balance"] == 0
    assert_problem(api.get(f"{base(customer)}/balance", {"as_of": "yesterday"}), 400)


def test_holds_commit_and_release(api):
    customer = CustomerFactory(allow_negative_balance=False)
    post_entry(api, customer, entry_type="increment", amount=50)
    hold = post_entry(api, customer, entry_type="decrement", amount=30,
                      entry_status="pending").json()
    assert hold["entry_status"] == "pending" and hold["hold_status"] == "open"
    balance = api.get(f"{base(customer)}/balance").json()
    assert (balance["balance"], balance["pending"], balance["available"]) == (50, 30, 20)
    assert_problem(post_entry(api, customer, entry_type="decrement", amount=21), 409,
                   "insufficient_balance")
    committed = api.post(f"{base(customer)}/ledger/{hold['id']}/commit")
    assert committed.status_code == 200, committed.content
    assert committed.json()["ending_balance"] == 20
    assert_problem(api.post(f"{base(customer)}/ledger/{hold['id']}/release"), 409,
                   "hold_already_settled")
    listed = api.get(f"{base(customer)}/ledger", {"entry_status": "pending"}).json()["data"]
    assert [e["hold_status"] for e in listed] == ["committed"]
    second = post_entry(api, customer, entry_type="decrement", amount=5,
                        entry_status="pending").json()
    released = api.post(f"{base(customer)}/ledger/{second['id']}/release").json()
    assert released["hold_status"] == "released"
    assert_problem(api.post(f"{base(customer)}/ledger/le_missing/commit"), 404)


def test_void_amend_and_expiration_change(api):
    customer = CustomerFactory()
    block = post_entry(api, customer, entry_type="increment", amount=40,
                       expiry_date="2099-06-01").json()["credit_block"]
    post_entry(api, customer, entry_type="decrement", amount=10)
    amended = post_entry(api, customer, entry_type="amendment", block_id=block["id"], amount=4)
    assert amended.json()["ending_balance"] == 34
    assert_problem(post_entry(api, customer, entry_type="amendment", block_id=block["id"],
                              amount=7), 400, "amendment_exceeds_initial_amount")
    moved = post_entry(api, customer, entry_type="expiration_change", block_id=block["id"],
                       amount=4, target_expiry_date="2100-01-01").json()
    assert moved["new_block_expiry_date"] == "2100-01-01T00:00:00Z"
    assert moved["starting_balance"] == moved["ending_balance"] == 34
    void = post_entry(api, customer, entry_type="void", block_id=block["id"],
                      void_reason="refund")
    assert void.status_code == 201, void.content
    body = void.json()
    assert body["entry_type"] == "void" and body["void_amount"] == 30
    assert body["void_reason"] == "refund" and body["ending_balance"] == 4
    kinds = [e["entry_type"] for e in api.get(f"{base(customer)}/ledger").json()["data"]]
    assert kinds[:2] == ["void", "void_initiated"]
    assert_problem(post_entry(api, customer, entry_type="void", block_id=block["id"]), 409,
                   "block_already_voided")


def test_external_customer_id_routes(api):
    customer = CustomerFactory(external_customer_id="acme-x")
    prefix = "/v1/customers/external_customer_id/acme-x/credits"
    assert api.post(f"{prefix}/ledger_entry", {"entry_type": "increment",
                                                "amount": 3}).status_code == 201
    assert api.get(f"{prefix}/balance").json()["balance"] == 3
    assert len(api.get(prefix).json()["data"]) == 1
    assert len(api.get(f"{prefix}/ledger").json()["data"]) == 1
    assert LedgerEntry.objects.filter(customer=customer).count() == 1
    assert_problem(api.get("/v1/customers/external_customer_id/nobody/credits/balance"), 404,
                   "customer_not_found")


@pytest.mark.parametrize("body", [
    {"entry_type": "increment", "amount": 0},
    {"entry_type": "increment", "amount": -5},
    {"entry_type": "increment", "amount": "NaN"},
    {"entry_type": "increment", "amount": "0.0000000000001"},
    {"entry_type": "increment", "amount": "1e18"},
    {"entry_type": "increment", "amount": 1, "per_unit_cost_basis": "-1"},
    {"entry_type": "increment", "amount": 1, "invoice_settings": {"auto_collection": True}},
    {"entry_type": "increment", "amount": 1, "expiry_date": "2020-01-01",
     "effective_date": "2021-01-01"},
    {"entry_type": "increment", "amount": 1, "filters": [{"field": "x", "operator": "includes",
                                                          "values": ["a"]}]},
    {"entry_type": "decrement"},
    {"entry_type": "decrement", "amount": 1, "entry_status": "unknown"},
    {"entry_type": "void"},
    {"entry_type": "void", "block_id": "BLOCK", "amount": 11},
    {"entry_type": "void", "block_id": "BLOCK", "currency": "EUR"},
    {"entry_type": "void", "block_id": "BLOCK", "void_reason": "boredom"},
    {"entry_type": "amendment", "block_id": "BLOCK", "amount": 1},
    {"entry_type": "expiration_change", "block_id": "BLOCK", "target_expiry_date": "2001-01-01"},
    {"entry_type": "expiration_change", "target_expiry_date": "2099-01-01"},
    {"entry_type": "increment", "amount": 1, "entry_status": "pending"},
    {"entry_type": "bogus", "amount": 1},
])
def test_bad_input_is_400_and_writes_nothing(api, body):
    customer = CustomerFactory()
    block = post_entry(api, customer, entry_type="increment", amount=10).json()["credit_block"]
    before = ledger_snapshot(customer)
    body = {k: (block["id"] if v == "BLOCK" else v) for k, v in body.items()}
    response = post_entry(api, customer, **body)
    assert_problem(response, 400)
    assert ledger_snapshot(customer) == before


def test_unknown_and_foreign_blocks_are_404(api):
    customer = CustomerFactory()
    other = CustomerFactory()
    foreign = post_entry(api, other, entry_type="increment", amount=10).json()["credit_block"]
    for block_id in ("cb_unknown", foreign["id"]):
        assert_problem(post_entry(api, customer, entry_type="void", block_id=block_id), 404,
                       "block_not_found")
    assert ledger_snapshot(customer) == []


def test_no_negative_balance_409(api):
    customer = CustomerFactory(allow_negative_balance=False)
    post_entry(api, customer, entry_type="increment", amount=1)
    before = ledger_snapshot(customer)
    assert_problem(post_entry(api, customer, entry_type="decrement", amount=2), 409,
                   "insufficient_balance")
    assert ledger_snapshot(customer) == before


def test_read_scope_cannot_write(api_with_scopes):
    customer = CustomerFactory()
    reader = api_with_scopes("read")
    assert reader.get(f"{base(customer)}/balance").status_code == 200
    assert_problem(post_entry(reader, customer, entry_type="increment", amount=1), 403)


def test_top_ups_create_list_delete(api):
    customer = CustomerFactory()
    body = {"currency": "USD", "threshold": "10", "amount": "50", "per_unit_cost_basis": "1",
            "invoice_settings": {"auto_collection": True, "net_terms": 0},
            "expires_after": 1, "expires_after_unit": "month"}
    created = api.post(f"{base(customer)}/top_ups", body)
    assert created.status_code == 201, created.content
    top_up = created.json()
    assert top_up["threshold"] == "10" and top_up["amount"] == "50"
    replacement = api.post(f"{base(customer)}/top_ups", {**body, "threshold": "20"}).json()
    listed = api.get(f"{base(customer)}/top_ups").json()["data"]
    assert [t["id"] for t in listed] == [replacement["id"]]
    assert api.delete(f"{base(customer)}/top_ups/{replacement['id']}").status_code == 204
    assert_problem(api.delete(f"{base(customer)}/top_ups/{replacement['id']}"), 404)
    assert_problem(api.post(f"{base(customer)}/top_ups", {**body, "expires_after_unit": None}),
                   400)


def test_ledger_list_query_count_does_not_grow(api):
    customer = CustomerFactory()
    post_entry(api, customer, entry_type="increment", amount=10)
    with CaptureQueriesContext(connection) as few:
        api.get(f"{base(customer)}/ledger")
    for _ in range(5):
        post_entry(api, customer, entry_type="decrement", amount=1)
        post_entry(api, customer, entry_type="decrement", amount=1, entry_status="pending")
    with CaptureQueriesContext(connection) as many:
        response = api.get(f"{base(customer)}/ledger")
    assert len(response.json()["data"]) == 11
    assert len(many.captured_queries) == len(few.captured_queries)


def test_list_filters_created_at_and_effective_date(api):
    customer = CustomerFactory()
    old = post_entry(api, customer, entry_type="increment", amount=1,
                     effective_date="2020-01-01T00:00:00Z").json()
    cut = old["created_at"]
    post_entry(api, customer, entry_type="increment", amount=2)
    newer = api.get(f"{base(customer)}/ledger", {"created_at[gt]": cut}).json()["data"]
    assert [e["amount"] for e in newer] == [2]
    recent_blocks = api.get(base(customer), {"effective_date[gte]": "2021-01-01T00:00:00Z"})
    assert [b["balance"] for b in recent_blocks.json()["data"]] == [2]
    assert_problem(api.get(f"{base(customer)}/ledger", {"created_at[gt]": "nope"}), 400)
    assert_problem(api.get(f"{base(customer)}/ledger", {"entry_type": "nope"}), 400)


def test_idempotency_key_replays_without_a_second_entry(api):
    customer = CustomerFactory()
    headers = {"Idempotency-Key": "inc-1"}
    body = {"entry_type": "increment", "amount": 5}
    first = api.post(f"{base(customer)}/ledger_entry", body, headers=headers)
    second = api.post(f"{base(customer)}/ledger_entry", body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert first.json() == second.json()
    assert LedgerEntry.objects.filter(customer=customer).count() == 1
    clash = api.post(f"{base(customer)}/ledger_entry", {**body, "amount": 6}, headers=headers)
    assert_problem(clash, 409)
