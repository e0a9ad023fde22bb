"""Meters and the usage endpoint (API.md §3)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ledgers.models import AuditLog
from metering.models import Meter
from tests.conftest import assert_problem
from tests.ledgers.factories import CustomerFactory
from tests.metering.factories import MeterFactory, event, ingest

pytestmark = pytest.mark.django_db


def create(api, **overrides):
    body = {"slug": "tokens", "name": "Tokens", "event_name": "llm", "aggregation": "sum",
            "value_property": "tokens", "group_by": {"model": "model"}}
    body.update(overrides)
    return api.post("/v1/meters", {k: v for k, v in body.items() if v is not ...})


def test_create_fetch_list_archive(api):
    response = create(api)
    assert response.status_code == 201, response.content
    meter = response.json()
    assert meter["id"].startswith("mtr_")
    assert {k: meter[k] for k in ("slug", "aggregation", "value_property", "group_by",
                                  "skipped_events", "archived_at")} == {
        "slug": "tokens", "aggregation": "sum", "value_property": "tokens",
        "group_by": {"model": "model"}, "skipped_events": 0, "archived_at": None}
    assert api.get(f"/v1/meters/{meter['id']}").json()["slug"] == "tokens"
    assert api.get("/v1/meters/tokens").json()["id"] == meter["id"]
    assert [m["id"] for m in api.get("/v1/meters").json()["data"]] == [meter["id"]]
    assert AuditLog.objects.filter(action="meter.create").count() == 1
    archived = api.delete("/v1/meters/tokens")
    assert archived.status_code == 200 and archived.json()["archived_at"]
    assert api.get("/v1/meters").json()["data"] == []
    assert api.get(f"/v1/meters/{meter['id']}").status_code == 200
    assert create(api).status_code == 201  # the slug is free again


@pytest.mark.parametrize(("overrides", "status", "code"), [
    ({"aggregation": "median"}, 400, "validation_failed"),
    ({"value_property": ...}, 400, "value_property_required"),
    ({"slug": "has space"}, 400, "invalid_slug"),
    ({"event_name": "a b"}, 400, "invalid_event_name"),
    ({"group_by": {"bad name": "x"}}, 400, "invalid_group_by"),
    ({"group_by": ["x"]}, 400, "validation_failed"),
])
def test_create_validation(api, overrides, status, code):
    assert_problem(create(api, **overrides), status, code)
    assert not Meter.objects.exists()


def test_count_needs_no_value_property(api):
    assert create(api, aggregation="count", value_property=...).status_code == 201


def test_duplicate_slug_is_409(api):
    create(api)
    assert_problem(create(api), 409, "duplicate_meter_slug")


def test_value_property_required_by_constraint():
    with pytest.raises(IntegrityError, match="meter_value_property_required"), \
            transaction.atomic():
        Meter.objects.create(slug="x", name="x", event_name="e", aggregation="sum")


def test_list_query_count_is_constant(api, django_assert_max_num_queries):
    for index in range(5):
        MeterFactory(slug=f"m{index}")
    from django.db import connection

    with CaptureQueriesContext(connection) as queries:
        assert len(api.get("/v1/meters").json()["data"]) == 5
    few = len(queries)
    for index in range(5, 15):
        MeterFactory(slug=f"m{index}")
    with django_assert_max_num_queries(few):
        assert len(api.get("/v1/meters").json()["data"]) == 15


def test_usage_endpoint(api):
    customer = CustomerFactory(external_customer_id="acme")
    other = CustomerFactory()
    meter = MeterFactory(slug="tokens", event_name="llm", value_property="tokens",
                         group_by={"model": "model"})
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    now = day + timedelta(hours=12)
    ingest(event(customer, name="llm", ts=day + timedelta(hours=1), tokens=5, model="a"),
           event(customer, name="llm", ts=day + timedelta(hours=1, minutes=5), tokens="0.5",
                 model="b"),
           event(customer, name="llm", ts=day + timedelta(hours=2), tokens="junk", model="a"),
           event(other, name="llm", ts=day + timedelta(hours=2), tokens=100, model="a"),
           now=now)
    params = {"external_customer_id": "acme", "timeframe_start": day.isoformat(),
              "timeframe_end": (day + timedelta(hours=3)).isoformat(), "window_size": "hour"}
    data = api.get(f"/v1/meters/{meter.pk}/usage", params).json()["data"]
    assert [(row["window_start"][11:16], row["value"]) for row in data] == [
        ("00:00", 0), ("01:00", 5.5), ("02:00", 0)]
    assert data[0]["customer_id"] == customer.pk and data[0]["group_by"] == {}
    grouped = api.get("/v1/meters/tokens/usage", {**params, "window_size": "",
                                                  "group_by": "model"}).json()["data"]
    assert [(row["group_by"], row["value"]) for row in grouped] == [
        ({"model": "a"}, 5), ({"model": "b"}, 0.5)]
    filtered = api.get("/v1/meters/tokens/usage", {**params, "filter[model]": "b"}).json()
    assert sum(row["value"] for row in filtered["data"]) == 0.5
    everyone = api.get("/v1/meters/tokens/usage", {
        "timeframe_start": day.isoformat(),
        "timeframe_end": (day + timedelta(hours=3)).isoformat()}).json()["data"]
    assert everyone == [{"window_start": everyone[0]["window_start"],
                         "window_end": everyone[0]["window_end"], "value": 105.5,
                         "customer_id": None, "group_by": {}}]
    assert api.get("/v1/meters/tokens").json()["skipped_events"] == 1


@pytest.mark.parametrize(("params", "status", "code"), [
    ({"timeframe_start": "2026-01-01T00:00:00"}, 400, "validation_failed"),
    ({"window_size": "week"}, 400, "validation_failed"),
    ({"window_time_zone": "Mars/Base"}, 400, "invalid_timezone"),
    ({"group_by": "nope"}, 400, "unknown_group_by"),
    ({"filter[nope]": "x"}, 400, "unknown_filter"),
    ({"customer_id": "cus_nope"}, 404, "customer_not_found"),
    ({"timeframe_end": "2026-01-01T00:00:00Z"}, 400, "invalid_timeframe"),
    ({"window_size": "minute", "timeframe_end": "2026-03-01T00:00:00Z"}, 400,
     "too_many_windows"),
])
def test_usage_validation(api, params, status, code):
    MeterFactory(slug="tokens", group_by={"model": "model"})
    base = {"timeframe_start": "2026-01-02T00:00:00Z", "timeframe_end": "2026-01-03T00:00:00Z"}
    assert_problem(api.get("/v1/meters/tokens/usage", {**base, **params}), status, code)


def test_usage_of_unknown_meter_is_404(api):
    assert_problem(api.get("/v1/meters/nope/usage", {
        "timeframe_start": "2026-01-02T00:00:00Z", "timeframe_end": "2026-01-03T00:00:00Z"}),
        404, "meter_not_found")


def test_unique_count_latest_and_min_max(api):
    customer = CustomerFactory()
    now = timezone.now()
    unique = MeterFactory(slug="users", aggregation="unique_count", value_property="user")
    latest = MeterFactory(slug="seats", aggregation="latest", value_property="seats")
    low = MeterFactory(slug="low", aggregation="min", value_property="seats")
    ts = now - timedelta(minutes=10)
    ingest(event(customer, ts=ts, user="u1", seats=3),
           event(customer, ts=ts + timedelta(seconds=1), user="u1", seats="9"),
           event(customer, ts=ts + timedelta(seconds=2), user=1, seats=5),
           event(customer, ts=ts + timedelta(seconds=3), user="1", seats="x"))
    params = {"customer_id": customer.pk, "timeframe_start": (now - timedelta(hours=1))
              .isoformat(), "timeframe_end": now.isoformat()}
    value = lambda slug: api.get(f"/v1/meters/{slug}/usage", params).json()["data"][0]["value"]  # noqa: E731
    assert value(unique.slug) == 3
    assert value(latest.slug) == 5
    assert value(low.slug) == 3
