"""Amend, deprecate, search and backfills (API.md §2) with their effect on usage."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ledgers.models import AuditLog
from metering import selectors
from metering.locks import register_lock_checker, unregister_lock_checker
from metering.models import Backfill, Event, EventVersion
from tests.conftest import assert_problem
from tests.ledgers.factories import CustomerFactory
from tests.metering.factories import MeterFactory, event, ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return CustomerFactory(external_customer_id="acme")


@pytest.fixture
def meter():
    return MeterFactory(slug="tokens", aggregation="sum", value_property="tokens")


def total(meter, customer, start=None, end=None):
    now = timezone.now()
    return selectors.usage_total(meter=meter, customer=customer,
                                 start=start or now - timedelta(days=30),
                                 end=end or now + timedelta(hours=2))


def amend_body(customer, ts, **props):
    return {"event_name": "api_call", "timestamp": ts.isoformat(),
            "customer_id": customer.pk, "properties": props}


def test_amend_keeps_history_and_usage_counts_only_current(api, customer, meter):
    ts = timezone.now() - timedelta(minutes=5)
    ingest(event(customer, ts=ts, key="e1", tokens=10))
    assert total(meter, customer) == 10
    response = api.put("/v1/events/e1", amend_body(customer, ts, tokens=4))
    assert response.status_code == 200, response.content
    assert response.json() == {"amended": "e1"}
    assert total(meter, customer) == 4
    api.put("/v1/events/e1", {**amend_body(customer, ts, tokens=7),
                              "customer_id": None, "external_customer_id": "acme"})
    assert total(meter, customer) == 7
    versions = list(EventVersion.objects.filter(event_id="e1").order_by("version")
                    .values_list("version", "action", "properties"))
    assert versions == [(1, "ingest", {"tokens": 10}), (2, "amend", {"tokens": 4}),
                        (3, "amend", {"tokens": 7})]
    assert AuditLog.objects.filter(action="event.amend", target_id="e1").count() == 2
    found = api.post("/v1/events/search", {"event_ids": ["e1"]}).json()["data"]
    assert found[0]["properties"] == {"tokens": 7}


@pytest.mark.parametrize(("change", "code"), [
    ({"timestamp": "shift"}, "timestamp_mismatch"),
    ({"customer": "other"}, "customer_mismatch"),
    ({"customer": "unknown"}, "customer_not_found"),
    ({"event_name": "a b"}, "invalid_event_name"),
    ({"properties": {"x": {"nested": 1}}}, "invalid_properties"),
])
def test_amend_validation(api, customer, meter, change, code):
    ts = timezone.now() - timedelta(minutes=5)
    ingest(event(customer, ts=ts, key="e1", tokens=10))
    body = amend_body(customer, ts, tokens=1)
    if change.get("timestamp"):
        body["timestamp"] = (ts + timedelta(microseconds=1)).isoformat()
    if change.get("customer") == "other":
        body["customer_id"] = CustomerFactory().pk
    if change.get("customer") == "unknown":
        body["customer_id"] = "cus_unknown"
    if "event_name" in change:
        body["event_name"] = change["event_name"]
    if "properties" in change:
        body["properties"] = change["properties"]
    assert_problem(api.put("/v1/events/e1", body), 400, code)
    assert total(meter, customer) == 10
    assert not EventVersion.objects.exists()


def test_amend_unknown_event_is_404(api, customer):
    assert_problem(api.put("/v1/events/nope", amend_body(customer, timezone.now(), a=1)), 404,
                   "event_not_found")


def test_deprecate_is_idempotent_and_stops_counting(api, customer, meter):
    ts = timezone.now() - timedelta(minutes=5)
    ingest(event(customer, ts=ts, key="e1", tokens=10), event(customer, ts=ts, tokens=1))
    for _ in range(2):
        response = api.put("/v1/events/e1/deprecate")
        assert response.status_code == 200
        assert response.json() == {"deprecated": "e1"}
    assert total(meter, customer) == 1
    assert Event.objects.get(pk="e1").deprecated
    assert AuditLog.objects.filter(action="event.deprecate").count() == 1
    assert_problem(api.put("/v1/events/e1", amend_body(customer, ts, tokens=3)), 409,
                   "event_deprecated")
    data = api.post("/v1/events/search", {"event_ids": ["e1"]}).json()["data"]
    assert data[0]["deprecated"] is True


def test_lock_checker_refuses_amend_and_deprecate(api, customer, meter):
    ts = timezone.now() - timedelta(minutes=5)
    ingest(event(customer, ts=ts, key="e1", tokens=10))
    calls = []

    def invoiced(*, customer_id, start, end):
        calls.append((customer_id, start, end))
        return "Usage is on issued invoice in_1." if customer_id == customer.pk else None

    register_lock_checker(invoiced)
    try:
        assert_problem(api.put("/v1/events/e1/deprecate"), 409, "usage_locked")
        assert_problem(api.put("/v1/events/e1", amend_body(customer, ts, tokens=1)), 409,
                       "usage_locked")
    finally:
        unregister_lock_checker(invoiced)
    assert calls[0][0] == customer.pk and calls[0][1] <= ts < calls[0][2]
    assert total(meter, customer) == 10
    assert api.put("/v1/events/e1/deprecate").status_code == 200


def test_search(api, customer):
    now = timezone.now()
    ingest(event(customer, ts=now - timedelta(hours=2), key="old"),
           event(customer, ts=now - timedelta(minutes=1), key="new"))
    data = api.post("/v1/events/search", {"event_ids": ["old", "new", "missing"]}).json()
    assert [e["id"] for e in data["data"]] == ["old", "new"]
    assert set(data["data"][0]) == {"id", "customer_id", "external_customer_id",
                                    "event_name", "properties", "timestamp", "deprecated"}
    data = api.post("/v1/events/search", {
        "event_ids": ["old", "new"],
        "timeframe_start": (now - timedelta(hours=1)).isoformat()}).json()
    assert [e["id"] for e in data["data"]] == ["new"]
    assert api.post("/v1/events/search", {"event_ids": ["zzz"]}).json() == {"data": []}
    assert_problem(api.post("/v1/events/search", {}), 400, "validation_failed")


def test_search_needs_read_scope(api_with_scopes, customer):
    assert api_with_scopes("read").post("/v1/events/search",
                                        {"event_ids": ["a"]}).status_code == 200
    assert_problem(api_with_scopes("ingest", "write").post("/v1/events/search",
                                                           {"event_ids": ["a"]}), 403)


def test_event_versions_are_append_only(customer):
    ts = timezone.now()
    ingest(event(customer, ts=ts, key="e1", tokens=1))
    from metering import services

    services.event_deprecate(event_id="e1", actor="test")
    with pytest.raises(IntegrityError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM metering_eventversion")


def test_idempotency_key_is_unique_forever_by_constraint(customer):
    ingest(event(customer, ts=timezone.now(), key="e1"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Event.objects.create(event_id="e1", customer=customer, event_name="x",
                             timestamp=timezone.now())


def test_event_needs_a_customer_reference_by_constraint():
    with pytest.raises(IntegrityError, match="event_has_customer"), transaction.atomic():
        Event.objects.create(event_id="e9", event_name="x", timestamp=timezone.now())


# --- backfills -------------------------------------------------------------------------------

def test_backfill_lifecycle_with_replace(api, customer, meter):
    old = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=5)
    ingest(event(customer, ts=old + timedelta(minutes=10), tokens=100),
           event(customer, ts=old + timedelta(hours=3), tokens=1),  # outside the timeframe
           now=old + timedelta(hours=4))
    start, end = old, old + timedelta(hours=2)
    created = api.post("/v1/events/backfills", {
        "timeframe_start": start.isoformat(), "timeframe_end": end.isoformat(),
        "external_customer_id": "acme", "replace_existing_events": True})
    assert created.status_code == 201, created.content
    backfill = created.json()
    assert backfill["status"] == "pending" and backfill["customer_id"] == customer.pk
    body = {"events": [event(customer, ts=old + timedelta(minutes=20), tokens=5),
                       event(customer, ts=old + timedelta(minutes=21), tokens=6)]}
    response = api.post(f"/v1/ingest?backfill_id={backfill['id']}&debug=true", body)
    assert response.status_code == 200, response.content
    window = dict(start=old - timedelta(days=1), end=old + timedelta(days=1))
    assert total(meter, customer, **window) == 101  # pending: not counted yet

    outside = api.post(f"/v1/ingest?backfill_id={backfill['id']}", {"events": [
        event(customer, ts=end + timedelta(minutes=1), tokens=1)]})
    assert "outside the backfill's timeframe" in \
        outside.json()["validation_failed"][0]["validation_errors"][0]

    closed = api.post(f"/v1/events/backfills/{backfill['id']}/close")
    assert closed.json()["status"] == "reflected" and closed.json()["events_ingested"] == 2
    assert total(meter, customer, **window) == 12  # 5 + 6 replaced the 100; 1 is outside
    assert_problem(api.post(f"/v1/events/backfills/{backfill['id']}/close"), 409,
                   "backfill_not_open")
    assert_problem(api.post(f"/v1/ingest?backfill_id={backfill['id']}", body), 409,
                   "backfill_not_open")

    reverted = api.post(f"/v1/events/backfills/{backfill['id']}/revert")
    assert reverted.json()["status"] == "reverted"
    assert total(meter, customer, **window) == 101
    fetched = api.get(f"/v1/events/backfills/{backfill['id']}").json()
    assert fetched["reverted_at"] and fetched["close_time"]
    listed = api.get("/v1/events/backfills").json()
    assert [b["id"] for b in listed["data"]] == [backfill["id"]]


def test_backfill_without_replace_adds(api, customer, meter):
    old = timezone.now() - timedelta(days=3)
    ingest(event(customer, ts=old, tokens=1), now=old)
    backfill = api.post("/v1/events/backfills", {
        "timeframe_start": (old - timedelta(hours=1)).isoformat(),
        "timeframe_end": (old + timedelta(hours=1)).isoformat()}).json()
    assert backfill["customer_id"] is None
    api.post(f"/v1/ingest?backfill_id={backfill['id']}",
             {"events": [event(customer, ts=old, tokens=2)]})
    api.post(f"/v1/events/backfills/{backfill['id']}/close")
    assert total(meter, customer, start=old - timedelta(days=1),
                 end=old + timedelta(days=1)) == Decimal(3)


def test_backfill_errors(api, customer):
    now = timezone.now()
    assert_problem(api.post("/v1/events/backfills", {
        "timeframe_start": now.isoformat(), "timeframe_end": now.isoformat()}), 400,
        "invalid_timeframe")
    assert_problem(api.post("/v1/events/backfills", {
        "timeframe_start": now.isoformat(), "timeframe_end": "2026-01-01"}), 400)
    assert_problem(api.post("/v1/events/backfills", {
        "timeframe_start": (now - timedelta(hours=1)).isoformat(),
        "timeframe_end": now.isoformat(), "customer_id": "cus_nope"}), 404)
    assert_problem(api.get("/v1/events/backfills/bf_nope"), 404, "backfill_not_found")
    assert_problem(api.post("/v1/ingest?backfill_id=bf_nope", {"events": []}), 404,
                   "backfill_not_found")
    assert not Backfill.objects.exists()


def test_backfill_close_refused_when_locked(api, customer):
    now = timezone.now()
    backfill = api.post("/v1/events/backfills", {
        "timeframe_start": (now - timedelta(days=40)).isoformat(),
        "timeframe_end": (now - timedelta(days=35)).isoformat()}).json()

    def locked(*, customer_id, start, end):
        return "Issued invoice covers this period."

    register_lock_checker(locked)
    try:
        assert_problem(api.post(f"/v1/events/backfills/{backfill['id']}/close"), 409,
                       "usage_locked")
    finally:
        unregister_lock_checker(locked)
    assert Backfill.objects.get().status == "pending"
