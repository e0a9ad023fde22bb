"""POST /v1/ingest: every rule of API.md §2, its message, and that nothing was ingested."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from ledgers.models import AuditLog
from metering.models import Event
from tests.conftest import assert_problem
from tests.ledgers.factories import CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return CustomerFactory(external_customer_id="acme")


def ev(key="e1", **overrides):
    body = {"idempotency_key": key, "event_name": "api_call",
            "timestamp": timezone.now().isoformat(), "external_customer_id": "acme",
            "properties": {"tokens": 3, "model": "small", "ok": True}}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def post(api, *events, query=""):
    return api.post(f"/v1/ingest{query}", {"events": list(events)})


def test_valid_batch_is_200_with_debug(api, customer):
    response = post(api, ev("a"), ev("b", customer_id=customer.pk,
                                     external_customer_id=...), query="?debug=true")
    assert response.status_code == 200, response.content
    assert response.json() == {"validation_failed": [],
                               "debug": {"duplicate": [], "ingested": ["a", "b"]}}
    assert set(Event.objects.values_list("customer_id", flat=True)) == {customer.pk}
    assert AuditLog.objects.filter(action="events.ingest").count() == 1


def test_without_debug_only_validation_failed(api, customer):
    response = post(api, ev("a"))
    assert response.json() == {"validation_failed": []}


def test_retry_is_duplicate_and_changes_nothing(api, customer):
    post(api, ev("a"))
    response = post(api, ev("a"), ev("b"), query="?debug=true")
    assert response.json()["debug"] == {"duplicate": ["a"], "ingested": ["b"]}
    assert Event.objects.count() == 2


def test_same_key_same_body_twice_in_one_request_counts_once(api, customer):
    body = ev("a")
    response = post(api, body, dict(body), query="?debug=true")
    assert response.status_code == 200
    assert response.json()["debug"]["ingested"] == ["a"]
    assert Event.objects.count() == 1


def test_same_key_different_bodies_rejects_whole_request(api, customer):
    response = post(api, ev("ok"), ev("a"), ev("a", event_name="other"))
    body = assert_problem(response, 400, "conflicting_idempotency_keys")
    assert body["validation_failed"][0]["idempotency_key"] == "a"
    assert Event.objects.count() == 0


RULES = [
    (dict(customer_id="cus_x"), "Exactly one of customer_id and external_customer_id"),
    (dict(external_customer_id=...), "Exactly one of customer_id and external_customer_id"),
    (dict(external_customer_id=None), "Exactly one of customer_id and external_customer_id"),
    (dict(external_customer_id=..., customer_id="cus_nope"), "customer_id 'cus_nope' does not"),
    (dict(external_customer_id=""), "external_customer_id must be a non-empty string"),
    (dict(event_name=""), "event_name is required"),
    (dict(event_name=...), "event_name is required"),
    (dict(event_name="api call"), "event_name must not contain whitespace"),
    (dict(event_name=5), "event_name is required"),
    (dict(idempotency_key=""), "idempotency_key is required"),
    (dict(idempotency_key="k" * 257), "idempotency_key is longer than 256"),
    (dict(properties={"a": {"b": 1}}), "nested objects and lists are not allowed"),
    (dict(properties={"a": [1, 2]}), "nested objects and lists are not allowed"),
    (dict(properties=[1]), "properties must be an object"),
    (dict(properties={"a": 10**18}), "magnitude must be below 10^18"),
    (dict(properties={"a": 0.1234567890123}), "At most 12 fractional digits"),
    (dict(timestamp="2026-11-23T10:00:00"), "has no UTC offset"),
    (dict(timestamp="2026-11-23"), "is not an RFC 3339 timestamp"),
    (dict(timestamp="yesterday"), "is not an RFC 3339 timestamp"),
    (dict(timestamp=1700000000), "timestamp must be an RFC 3339 string"),
    (dict(timestamp=...), "timestamp must be an RFC 3339 string"),
]


@pytest.mark.parametrize(("overrides", "message"), RULES)
def test_each_rule_reports_and_ingests_nothing_for_that_event(api, customer, overrides,
                                                               message):
    bad = ev("bad", **overrides)
    response = post(api, ev("good"), bad, query="?debug=true")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["debug"]["ingested"] == ["good"]
    [failure] = body["validation_failed"]
    assert failure["idempotency_key"] == (bad.get("idempotency_key")
                                          if isinstance(bad.get("idempotency_key"), str)
                                          else None)
    assert any(message in error for error in failure["validation_errors"]), failure
    assert list(Event.objects.values_list("event_id", flat=True)) == ["good"]


def test_timestamp_limits(api, customer, settings):
    now = timezone.now()
    response = post(api, ev("future", timestamp=(now + timedelta(hours=1, minutes=1))
                            .isoformat()),
                    ev("old", timestamp=(now - timedelta(days=1, minutes=1)).isoformat()),
                    ev("offset", timestamp=(now - timedelta(hours=2)).astimezone(
                        timezone.get_fixed_timezone(330)).isoformat()))
    failures = {f["idempotency_key"]: f["validation_errors"]
                for f in response.json()["validation_failed"]}
    assert "more than 1 hour in the future" in failures["future"][0]
    assert "older than the ingestion grace period" in failures["old"][0]
    assert "offset" not in failures
    assert list(Event.objects.values_list("event_id", flat=True)) == ["offset"]


def test_all_errors_of_one_event_are_listed(api, customer):
    response = post(api, ev("k", event_name="a b", timestamp="x", properties={"n": {}}))
    [failure] = response.json()["validation_failed"]
    assert len(failure["validation_errors"]) == 3


def test_event_that_is_not_an_object(api, customer):
    response = post(api, "nope", ev("good"))
    assert response.status_code == 400
    assert response.json()["validation_failed"] == [
        {"idempotency_key": None, "validation_errors": ["events[0] must be an object."]}]
    assert Event.objects.count() == 1


def test_deprecated_event_cannot_be_ingested_again(api, customer):
    post(api, ev("a"))
    assert api.put("/v1/events/a/deprecate").status_code == 200
    response = post(api, ev("a"), query="?debug=true")
    assert response.status_code == 400
    assert "was deprecated" in response.json()["validation_failed"][0]["validation_errors"][0]
    assert response.json()["debug"] == {"duplicate": [], "ingested": []}


def test_unknown_external_id_is_kept_and_attributed_on_creation(api):
    response = post(api, ev("early", external_customer_id="later-co"))
    assert response.status_code == 200
    assert Event.objects.get().customer_id is None
    created = api.post("/v1/customers", {"name": "Later", "email": "l@example.com",
                                         "external_customer_id": "later-co"}).json()
    assert Event.objects.get().customer_id == created["id"]


@pytest.mark.parametrize(("raw", "code"), [
    (b"not json", "malformed_request"),
    (b'{"events": {"a": 1}}', "invalid_events"),
    (b'{"events": "x"}', "invalid_events"),
    (b"[1, 2]", "invalid_events"),
    (b"{}", "invalid_events"),
    (b'{"events": [{"idempotency_key": "a", "properties": {"x": NaN}}]}', "malformed_request"),
    (b'{"events": [{"properties": {"x": Infinity}}]}', "malformed_request"),
])
def test_malformed_bodies_are_clear_4xx(api, customer, raw, code):
    response = api.post("/v1/ingest", raw=raw)
    assert_problem(response, 400, code)
    assert Event.objects.count() == 0


def test_more_than_1000_events(api, customer):
    response = post(api, *[ev(f"k{i}") for i in range(1001)])
    body = assert_problem(response, 400, "too_many_events")
    assert "1001" in body["detail"]
    assert Event.objects.count() == 0


def test_exactly_1000_events(api, customer):
    response = post(api, *[ev(f"k{i}") for i in range(1000)])
    assert response.status_code == 200
    assert Event.objects.count() == 1000


def test_body_over_5_mb_is_413(api, customer):
    raw = json.dumps({"events": [ev("a", properties={"pad": "x" * (5 * 1024 * 1024)})]})
    assert_problem(api.post("/v1/ingest", raw=raw), 413, "body_too_large")
    assert Event.objects.count() == 0


def test_scopes(api_with_scopes, anonymous_api, customer):
    assert post(api_with_scopes("ingest"), ev("a")).status_code == 200
    assert_problem(post(api_with_scopes("read", "write"), ev("b")), 403)
    assert_problem(post(anonymous_api, ev("c")), 401)
    assert list(Event.objects.values_list("event_id", flat=True)) == ["a"]


def test_idempotency_key_header_replays(api, customer):
    body = {"events": [ev("a")]}
    first = api.post("/v1/ingest?debug=true", body, headers={"Idempotency-Key": "req-1"})
    again = api.post("/v1/ingest?debug=true", body, headers={"Idempotency-Key": "req-1"})
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Event.objects.count() == 1


def test_numbers_stay_exact(api, customer):
    post(api, ev("a", properties={"x": 0.1, "y": "0.10", "z": 12345678901234567}))
    response = api.post("/v1/events/search", {"event_ids": ["a"]})
    assert b'"x":0.1' in response.content
    assert response.json()["data"][0]["properties"] == {"x": 0.1, "y": "0.10",
                                                        "z": 12345678901234567}


def test_nul_characters_are_refused_before_anything_is_ingested(api):
    from metering.models import Event

    body = ('{"events": [{"idempotency_key": "k\\u0000", "event_name": "x", '
            '"timestamp": "2030-01-01T00:00:00Z", "properties": {}, '
            '"external_customer_id": "c"}]}')
    response = api.post("/v1/ingest", raw=body)
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"
    assert not Event.objects.exists()
