"""Entitlements, grants, value, history and reset over HTTP, with events ingested by
POST /v1/ingest."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing_project.api import format_timestamp
from entitlements.models import Entitlement, EntitlementGrant, EntitlementReset, Feature
from ledgers import periods
from ledgers.models import AuditLog
from tests.conftest import assert_problem
from tests.ledgers.factories import CustomerFactory
from tests.metering.factories import MeterFactory

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def world(api):
    meter = MeterFactory(slug="tokens", event_name="tokens", aggregation="sum",
                         value_property="n")
    customer = CustomerFactory(external_customer_id="acme")
    api.post("/v1/features", {"key": "tokens", "name": "Tokens", "meter_slug": meter.slug})
    api.post("/v1/features", {"key": "sso", "name": "SSO"})
    now = timezone.now()
    anchor = now - timedelta(days=10)
    return {"customer": customer, "meter": meter, "now": now, "anchor": anchor,
            "base": f"/v1/customers/{customer.pk}/entitlements"}


def ingest(api, customer, *events):
    body = {"events": [
        {"idempotency_key": f"e-{i}-{ts.timestamp()}", "event_name": "tokens",
         "timestamp": format_timestamp(ts), "customer_id": customer.pk,
         "properties": {"n": n}} for i, (ts, n) in enumerate(events)]}
    r = api.post("/v1/ingest", body)
    assert r.status_code in (200, 201), r.content
    assert not r.json().get("validation_failed"), r.content


def metered(api, world, **extra):
    body = {"type": "metered", "feature_key": "tokens",
            "usage_period": {"interval": "month", "anchor": format_timestamp(world["anchor"])},
            **extra}
    r = api.post(world["base"], body)
    assert r.status_code == 201, r.content
    return r.json()


def test_boolean_and_static_entitlements(api, world):
    base = world["base"]
    r = api.post(base, {"type": "boolean", "feature_key": "sso"})
    assert r.status_code == 201, r.content
    ent = r.json()
    assert ent["type"] == "boolean" and ent["feature_key"] == "sso"
    assert ent["usage_period"] is None and ent["current_usage_period"] is None
    value = api.get(f"{base}/sso/value").json()
    assert value == {"has_access": True, "balance": None, "usage": None, "overage": None,
                     "total_available_grant_amount": None, "config": None}

    conflict = assert_problem(api.post(base, {"type": "static", "feature_key": "sso",
                                              "config": {"a": 1}}), 409, "entitlement_exists")
    assert conflict["conflicting_id"] == ent["id"]

    deleted = api.delete(f"{base}/{ent['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted_at"]
    assert api.get(f"{base}/{ent['id']}/value").json()["has_access"] is False
    before = ent["created_at"]
    assert api.get(f"{base}/{ent['id']}/value", {"time": before}).json()["has_access"] is True
    assert_problem(api.get(f"{base}/sso"), 404, "entitlement_not_found")
    assert_problem(api.delete(f"{base}/{ent['id']}"), 409, "entitlement_already_deleted")

    assert_problem(api.post(base, {"type": "static", "feature_key": "sso"}), 400,
                   "config_required")
    assert_problem(api.post(base, {"type": "static", "feature_key": "sso", "config": "x"}), 400)
    assert_problem(api.post(base, {"type": "boolean", "feature_key": "sso",
                                   "config": {"a": 1}}), 400, "config_not_allowed")
    config_raw = b'{"type": "static", "feature_key": "sso", ' \
        b'"config": {"seats": 5, "tier": "gold", "ratio": 0.1, "nested": [1.25, {"x": 1e3}]}}'
    static = api.post(base, raw=config_raw)
    assert static.status_code == 201, static.content
    value = api.get(f"{base}/sso/value")
    assert value.json()["has_access"] is True
    # numbers in config stay exact (0.1, not 0.1000000000000000055...)
    assert b'"ratio":0.1,' in value.content, value.content
    assert b'"nested":[1.25,{"x":1000}]' in value.content, value.content
    assert api.get(f"{base}/sso").json()["config"]["tier"] == "gold"

    listed = api.get(base).json()["data"]
    assert [e["id"] for e in listed] == [static.json()["id"]]
    assert len(api.get(base, {"include_deleted": "true"}).json()["data"]) == 2


def test_metered_end_to_end(api, world):
    base, customer, anchor, now = world["base"], world["customer"], world["anchor"], world["now"]
    ent = metered(api, world)
    assert ent["current_usage_period"]["from"] == format_timestamp(anchor)
    assert ent["measure_usage_from"] == format_timestamp(anchor)
    assert ent["last_reset"] is None

    grant_body = {"amount": 100, "priority": 1, "effective_at": format_timestamp(anchor),
                  "expiration": {"duration": "month", "count": 2}}
    g1 = api.post(f"{base}/tokens/grants", grant_body)
    assert g1.status_code == 201, g1.content
    g1 = g1.json()
    assert g1["expires_at"] == format_timestamp(periods.add_interval(anchor, "month", 2))
    assert g1["expiration"] == {"duration": "month", "count": 2}
    g2 = api.post(f"{base}/{ent['id']}/grants", {**grant_body, "priority": 2,
                                                  "max_rollover_amount": "50.5"}).json()
    assert g2["max_rollover_amount"] == D("50.5")

    ingest(api, customer, (now - timedelta(hours=3), 70), (now - timedelta(hours=2), "50"))
    value = api.get(f"{base}/tokens/value").json()
    assert value == {"has_access": True, "balance": 80, "usage": 120, "overage": 0,
                     "total_available_grant_amount": 200, "config": None}

    # grants lists
    listed = api.get(f"{base}/tokens/grants").json()["data"]
    assert {g["id"] for g in listed} == {g1["id"], g2["id"]}
    assert len(api.get("/v1/grants", {"customer": customer.pk}).json()["data"]) == 2
    assert len(api.get("/v1/grants", {"customer": "acme", "feature": "tokens"})
               .json()["data"]) == 2
    assert api.get("/v1/grants", {"feature": "sso"}).json()["data"] == []

    # void g2 (80 left on it; g1 burned first): not retroactive
    voided = api.post(f"/v1/grants/{g2['id']}/void", {"reason": "mistake"})
    assert voided.status_code == 200, voided.content
    assert voided.json()["voided_at"]
    assert_problem(api.post(f"/v1/grants/{g2['id']}/void", {}), 409, "grant_already_voided")
    value = api.get(f"{base}/tokens/value").json()
    assert (value["balance"], value["usage"], value["overage"]) == (0, 120, 0)
    assert value["has_access"] is False
    assert [g["id"] for g in api.get("/v1/grants").json()["data"]] == [g1["id"]]
    assert len(api.get("/v1/grants", {"include_voided": "true"}).json()["data"]) == 2

    # history
    history = api.get(f"{base}/{ent['id']}/history",
                      {"from": format_timestamp(now - timedelta(days=1)),
                       "to": format_timestamp(now + timedelta(seconds=1)),
                       "window_size": "hour"}).json()
    windows = history["windowed_history"]
    assert sum(D(str(w["usage"])) for w in windows) == 120
    assert windows[0]["balance_at_start"] == 200
    burndown = history["burndown_history"]
    assert burndown[0]["balance_at_start"] == 200
    assert sum(D(str(s["usage"])) for s in burndown) == 120
    grant_usage = {u["grant_id"]: u["usage"] for s in burndown for u in s["grant_usages"]}
    assert grant_usage == {g1["id"]: 100, g2["id"]: 20}

    # reset: usage restarts; g1 is used up, g2 voided; a new grant counts from here
    r = api.post(f"{base}/tokens/reset", {"preserve_overage": False})
    assert r.status_code == 201, r.content
    value = api.get(f"{base}/tokens/value").json()
    assert (value["balance"], value["usage"], value["overage"]) == (0, 0, 0)
    assert api.post(f"{base}/tokens/grants", {**grant_body, "effective_at": r.json()[
        "effective_at"]}).status_code == 201
    assert api.get(f"{base}/tokens/value").json()["balance"] == 100
    detail = api.get(f"{base}/tokens").json()
    assert detail["last_reset"] == r.json()["effective_at"]
    assert detail["current_usage_period"]["from"] == r.json()["effective_at"]
    assert AuditLog.objects.filter(action="entitlement.reset").count() == 1


def test_external_customer_routes(api, world):
    metered(api, world)
    base = "/v1/customers/external_customer_id/acme/entitlements"
    assert api.get(f"{base}/tokens").status_code == 200
    assert api.get(f"{base}/tokens/value").json()["balance"] == 0
    r = api.post(f"{base}/tokens/grants", {"amount": 5,
                                           "effective_at": format_timestamp(world["anchor"]),
                                           "expiration": {"duration": "DAY", "count": 60}})
    assert r.status_code == 201, r.content
    assert api.get(f"{base}/tokens/value").json()["balance"] == 5
    assert_problem(api.get("/v1/customers/external_customer_id/nobody/entitlements"), 404,
                   "customer_not_found")


def test_idempotent_grant_create(api, world):
    metered(api, world)
    body = {"amount": 5, "effective_at": format_timestamp(world["anchor"]),
            "expiration": {"duration": "day", "count": 60}}
    path = f"{world['base']}/tokens/grants"
    first = api.post(path, body, headers={"Idempotency-Key": "k1"})
    again = api.post(path, body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert EntitlementGrant.objects.count() == 1


def test_bad_input_writes_nothing(api, world):
    base, anchor, now = world["base"], world["anchor"], world["now"]
    api.post("/v1/features", {"key": "old", "name": "Old"})
    api.delete("/v1/features/old")
    period = {"interval": "month", "anchor": format_timestamp(anchor)}
    cases = [
        ({"type": "metered", "feature_key": "sso", "usage_period": period},
         "feature_not_metered"),
        ({"type": "metered", "feature_key": "tokens"}, "usage_period_required"),
        ({"type": "metered", "feature_key": "tokens",
          "usage_period": {"interval": "PT30M"}}, "invalid_usage_period"),
        ({"type": "metered", "feature_key": "tokens",
          "usage_period": {"interval": "fortnight"}}, "invalid_usage_period"),
        ({"type": "boolean", "feature_key": "nope"}, "feature_not_found"),
        ({"type": "boolean", "feature_id": "feat_nope"}, "feature_not_found"),
        ({"type": "boolean", "feature_key": "old"}, "feature_archived"),
        ({"type": "boolean", "feature_key": "sso",
          "feature_id": Feature.objects.get(key="tokens").pk}, "feature_mismatch"),
        ({"type": "boolean"}, None),
        ({"type": "gold", "feature_key": "sso"}, None),
        ({"type": "metered", "feature_key": "tokens", "usage_period": period,
          "issue_after_reset": -1}, None),
        ({"type": "metered", "feature_key": "tokens", "usage_period": period,
          "is_soft_limit": "maybe"}, None),
    ]
    for body, code in cases:
        assert_problem(api.post(base, body), 400, code)
    assert not Entitlement.objects.exists()

    ent = metered(api, world)
    grants = f"{base}/tokens/grants"
    ok = {"amount": 10, "effective_at": format_timestamp(anchor),
          "expiration": {"duration": "month", "count": 1}}
    bad_grants = [
        ({**ok, "amount": -5}, None),
        ({**ok, "amount": 0}, None),
        ({**ok, "amount": "abc"}, None),
        ({**ok, "min_rollover_amount": 6, "max_rollover_amount": 5}, "min_rollover_above_max"),
        ({**ok, "min_rollover_amount": -1}, None),
        ({**ok, "effective_at": format_timestamp(anchor - timedelta(seconds=1))},
         "effective_at_before_current_period"),
        ({**ok, "effective_at": "2025-01-01T00:00:00"}, None),
        ({**ok, "expiration": {"duration": "fortnight", "count": 1}}, None),
        ({**ok, "expiration": {"duration": "day", "count": 0}}, None),
        ({k: v for k, v in ok.items() if k != "expiration"}, None),
        ({**ok, "recurrence": {"interval": "PT5M"}}, "invalid_recurrence"),
        ({**ok, "priority": -1}, None),
    ]
    for body, code in bad_grants:
        assert_problem(api.post(grants, body), 400, code)
    assert not EntitlementGrant.objects.exists()

    future = format_timestamp(now + timedelta(hours=1))
    assert_problem(api.post(f"{base}/tokens/reset", {"effective_at": future}), 400,
                   "reset_in_future")
    assert_problem(api.post(f"{base}/tokens/reset",
                            {"effective_at": format_timestamp(anchor - timedelta(days=1))}),
                   400, "reset_before_current_period")
    assert not EntitlementReset.objects.exists()

    grant = api.post(grants, ok).json()
    assert_problem(api.post(f"/v1/grants/{grant['id']}/void", {"voided_at": future}), 400,
                   "voided_at_in_future")
    assert_problem(api.post(f"/v1/grants/{grant['id']}/void",
                            {"voided_at": format_timestamp(anchor - timedelta(days=1))}),
                   400, "voided_at_before_current_period")
    assert_problem(api.post("/v1/grants/egr_nope/void", {}), 404, "grant_not_found")
    assert not EntitlementGrant.objects.filter(voided_at__isnull=False).exists()

    # a reset at a time, then another before it
    r = api.post(f"{base}/tokens/reset",
                 {"effective_at": format_timestamp(now - timedelta(hours=1))})
    assert r.status_code == 201
    assert_problem(api.post(f"{base}/tokens/reset",
                            {"effective_at": format_timestamp(now - timedelta(hours=2))}),
                   400, "reset_before_current_period")
    assert_problem(api.get(f"{base}/{ent['id']}/value", {"time": "yesterday"}), 400)
    for far in ("9999-12-31T23:30:00Z", "9999-01-01T00:00:00Z"):  # no room for periods
        assert_problem(api.get(f"{base}/{ent['id']}/value", {"time": far}), 400)
        assert_problem(api.get(f"{base}/{ent['id']}/history", {"to": far}), 400)
    assert api.get(f"{base}/{ent['id']}/value",
                   {"time": "9998-12-31T23:30:00Z"}).status_code == 200
    assert_problem(api.get(f"{base}/{ent['id']}/history", {"window_size": "week"}), 400)
    assert_problem(api.get(f"{base}/sso/history"), 404)


def test_boolean_entitlement_has_no_grants(api, world):
    api.post(world["base"], {"type": "boolean", "feature_key": "sso"})
    assert_problem(api.post(f"{world['base']}/sso/grants",
                            {"amount": 1, "effective_at": format_timestamp(world["now"]),
                             "expiration": {"duration": "day", "count": 1}}), 400,
                   "not_metered")
    assert_problem(api.post(f"{world['base']}/sso/reset", {}), 400, "not_metered")


def test_issue_after_reset_and_soft_limit(api, world):
    ent = metered(api, world, issue_after_reset=25, is_soft_limit=True,
                  issue_after_reset_priority=3)
    grants = api.get(f"{world['base']}/{ent['id']}/grants").json()["data"]
    assert len(grants) == 1
    g = grants[0]
    assert (g["amount"], g["min_rollover_amount"], g["max_rollover_amount"], g["priority"],
            g["expiration"], g["source"]) == (25, 25, 25, 3, None, "issue_after_reset")
    ingest(api, world["customer"], (world["now"] - timedelta(minutes=5), 40))
    value = api.get(f"{world['base']}/tokens/value").json()
    assert (value["has_access"], value["balance"], value["overage"]) == (True, 0, 15)


def test_value_query_count_is_pinned(api, world, django_assert_max_num_queries):
    """API key, one context query (entitlement, feature, meter, grants, resets, snapshot and
    metering's rollup watermark), and one usage query for every engine segment since the
    snapshot together (metering.usage_batch)."""
    metered(api, world)
    for i in range(5):
        api.post(f"{world['base']}/tokens/grants",
                 {"amount": 10, "priority": i, "effective_at": format_timestamp(world["anchor"]),
                  "expiration": {"duration": "year", "count": 1}})
    ingest(api, world["customer"], (world["now"] - timedelta(minutes=5), 4))
    api.get(f"{world['base']}/tokens/value")  # prepares the context statement on the connection
    with django_assert_max_num_queries(3):
        r = api.get(f"{world['base']}/tokens/value")
    assert r.json()["balance"] == 46


def test_list_query_counts_are_pinned(api, world, django_assert_max_num_queries):
    metered(api, world)
    api.post(world["base"], {"type": "boolean", "feature_key": "sso"})
    for _ in range(3):
        api.post(f"{world['base']}/tokens/grants",
                 {"amount": 1, "effective_at": format_timestamp(world["anchor"]),
                  "expiration": {"duration": "day", "count": 60}})
    # (+2: the request's savepoint inside the test transaction)
    with django_assert_max_num_queries(6):
        assert len(api.get(world["base"]).json()["data"]) == 2
    with django_assert_max_num_queries(4):
        assert len(api.get("/v1/grants").json()["data"]) == 3
    with django_assert_max_num_queries(7):
        assert len(api.get(f"{world['base']}/tokens/grants").json()["data"]) == 3
    with django_assert_max_num_queries(4):
        assert len(api.get("/v1/features").json()["data"]) == 2
