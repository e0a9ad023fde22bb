from datetime import timedelta

import pytest
from django.utils import timezone

from ledgers.models import AuditLog, Customer
from tests.conftest import assert_problem
from tests.ledgers.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_create_returns_customer_and_writes_audit(api):
    response = api.post("/v1/customers", {
        "name": "Acme", "email": "a@acme.example", "external_customer_id": "acme",
        "currency": "usd", "timezone": "Europe/Berlin", "metadata": {"tier": "gold"},
        "allow_negative_balance": False,
    })
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("cus_")
    assert body["external_customer_id"] == "acme"
    assert body["currency"] == "USD"
    assert body["timezone"] == "Europe/Berlin"
    assert body["metadata"] == {"tier": "gold"}
    assert body["allow_negative_balance"] is False
    assert body["plan_id"] is None
    assert body["created_at"].endswith("Z")
    audit = AuditLog.objects.get(target_id=body["id"])
    assert audit.action == "customer.create"
    assert audit.actor == "api_key:test"
    assert audit.data["after"]["email"] == "a@acme.example"


def test_defaults(api):
    body = api.post("/v1/customers", {"name": "B", "email": "b@example.com"}).json()
    assert body["timezone"] == "UTC"
    assert body["allow_negative_balance"] is True
    assert body["external_customer_id"] is None
    assert body["metadata"] == {}
    assert body["billing_anchor"] == body["created_at"]


def test_unknown_fields_are_ignored(api):
    response = api.post("/v1/customers", {"name": "C", "email": "c@example.com",
                                          "payment_provider": "stripe", "tax_id": None})
    assert response.status_code == 201
    assert "payment_provider" not in response.json()


def test_duplicate_external_id_is_409_and_writes_nothing(api):
    existing = CustomerFactory(external_customer_id="dup")
    audits = AuditLog.objects.count()
    response = api.post("/v1/customers", {"name": "X", "email": "x@example.com",
                                          "external_customer_id": "dup"})
    body = assert_problem(response, 409, "duplicate_external_customer_id")
    assert body["conflicting_id"] == existing.id
    assert Customer.objects.count() == 1
    assert AuditLog.objects.count() == audits


@pytest.mark.parametrize("payload, fields", [
    ({}, {"name", "email"}),
    ({"name": "X", "email": "not-an-email"}, {"email"}),
    ({"name": "X", "email": "x@example.com", "timezone": "Mars/Olympus"}, {"timezone"}),
    ({"name": "X", "email": "x@example.com", "metadata": {"a": {"nested": 1}}}, {"metadata.a"}),
    ({"name": "X", "email": "x@example.com", "metadata": "x"}, {"metadata"}),
    ({"name": ["X"], "email": 5, "allow_negative_balance": "maybe"},
     {"name", "allow_negative_balance"}),
    ({"name": "X", "email": "x@example.com", "plan_id": "plan_missing"}, {"plan_id"}),
    ({"name": "X", "email": "x@example.com", "billing_anchor": "2026-01-01T00:00:00"},
     {"billing_anchor"}),
    ({"name": "X", "email": "x@example.com", "external_customer_id": "  "},
     {"external_customer_id"}),
])
def test_invalid_input_is_400_per_field_and_writes_nothing(api, payload, fields):
    body = assert_problem(api.post("/v1/customers", payload), 400, "validation_failed")
    assert fields <= {error["field"] for error in body["validation_errors"]}
    assert Customer.objects.count() == 0


def test_body_not_an_object_is_400(api):
    assert_problem(api.post("/v1/customers", raw="[1, 2]"), 400)
    assert_problem(api.post("/v1/customers", raw="{not json"), 400, "malformed_request")
    assert Customer.objects.count() == 0


def test_billing_anchor_date_is_start_of_day_in_customer_timezone(api):
    body = api.post("/v1/customers", {"name": "D", "email": "d@example.com",
                                      "timezone": "America/New_York",
                                      "billing_anchor": "2026-03-15"}).json()
    assert body["billing_anchor"] == "2026-03-15T04:00:00Z"


def test_fetch_by_id_and_external_id(api):
    customer = CustomerFactory(external_customer_id="ext with space")
    assert api.get(f"/v1/customers/{customer.id}").json()["id"] == customer.id
    response = api.get("/v1/customers/external_customer_id/ext%20with%20space")
    assert response.status_code == 200
    assert response.json()["id"] == customer.id
    assert_problem(api.get("/v1/customers/cus_missing"), 404, "customer_not_found")
    assert_problem(api.get("/v1/customers/external_customer_id/nobody"), 404)


def test_update_changes_only_given_fields_and_audits(api):
    customer = CustomerFactory(name="Old", metadata={"a": "1"})
    response = api.put(f"/v1/customers/{customer.id}", {"name": "New", "timezone": "Asia/Tokyo"})
    assert response.status_code == 200, response.content
    customer.refresh_from_db()
    assert (customer.name, customer.timezone, customer.metadata) == ("New", "Asia/Tokyo",
                                                                     {"a": "1"})
    audit = AuditLog.objects.get(action="customer.update")
    assert audit.data["before"]["name"] == "Old"
    assert audit.data["after"]["name"] == "New"


def test_update_by_external_id(api):
    customer = CustomerFactory(external_customer_id="e1")
    response = api.put("/v1/customers/external_customer_id/e1", {"email": "new@example.com"})
    assert response.status_code == 200
    customer.refresh_from_db()
    assert customer.email == "new@example.com"


def test_update_to_existing_external_id_is_409(api):
    CustomerFactory(external_customer_id="taken")
    customer = CustomerFactory(external_customer_id="mine")
    assert_problem(api.put(f"/v1/customers/{customer.id}", {"external_customer_id": "taken"}),
                   409)
    customer.refresh_from_db()
    assert customer.external_customer_id == "mine"


def test_currency_is_not_updatable_and_ignored(api):
    customer = CustomerFactory(currency="USD")
    api.put(f"/v1/customers/{customer.id}", {"currency": "EUR"})
    customer.refresh_from_db()
    assert customer.currency == "USD"


def test_list_paginates_newest_first_with_stable_cursor(api):
    now = timezone.now()
    customers = [CustomerFactory(created_at=now - timedelta(minutes=i)) for i in range(5)]
    first = api.get("/v1/customers", {"limit": 2}).json()
    assert [c["id"] for c in first["data"]] == [customers[0].id, customers[1].id]
    assert first["pagination_metadata"]["has_more"] is True
    CustomerFactory(created_at=now + timedelta(minutes=1))  # a concurrent insert
    second = api.get("/v1/customers", {"limit": 2,
                                       "cursor": first["pagination_metadata"]["next_cursor"]})
    assert [c["id"] for c in second.json()["data"]] == [customers[2].id, customers[3].id]
    third = api.get("/v1/customers", {"limit": 2,
                                      "cursor": second.json()["pagination_metadata"]["next_cursor"]}
                    ).json()
    assert [c["id"] for c in third["data"]] == [customers[4].id]
    assert third["pagination_metadata"] == {"has_more": False, "next_cursor": None}


def test_list_ties_on_created_at_are_broken_by_id(api):
    now = timezone.now()
    ids = sorted((CustomerFactory(created_at=now).id for _ in range(4)), reverse=True)
    seen = []
    cursor = None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        body = api.get("/v1/customers", params).json()
        seen += [c["id"] for c in body["data"]]
        cursor = body["pagination_metadata"]["next_cursor"]
        if not cursor:
            break
    assert seen == ids


def test_list_filters(api):
    now = timezone.now()
    old = CustomerFactory(external_customer_id="old", created_at=now - timedelta(days=2))
    new = CustomerFactory(external_customer_id="new", created_at=now)
    by_ext = api.get("/v1/customers", {"external_customer_id": "old"}).json()["data"]
    assert [c["id"] for c in by_ext] == [old.id]
    since = (now - timedelta(days=1)).isoformat()
    recent = api.get("/v1/customers", {"created_at[gte]": since}).json()["data"]
    assert [c["id"] for c in recent] == [new.id]
    before = api.get("/v1/customers", {"created_at[lt]": since}).json()["data"]
    assert [c["id"] for c in before] == [old.id]


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"cursor": "garbage!"},
    {"created_at[gte]": "2026-01-01T00:00:00"}, {"created_at[gte]": "yesterday"},
    {"created_at[lt]": "100%s %(x)s"},
])
def test_list_bad_params_are_400(api, params):
    assert_problem(api.get("/v1/customers", params), 400)


def test_list_query_count_is_constant(api, django_assert_max_num_queries):
    for _ in range(30):
        CustomerFactory()
    with django_assert_max_num_queries(4):  # key lookup, savepoint pair, page
        assert len(api.get("/v1/customers", {"limit": 100}).json()["data"]) == 30
