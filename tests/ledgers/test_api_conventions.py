"""API.md §0: auth and scopes, problem+json, body limits, idempotency, decimals, docs, health."""

import json
import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client

from billing_project.api import json_dumps, json_loads
from billing_project.decimals import DecimalInputError, normalize, parse_decimal
from ledgers.models import ApiKey, Customer, IdempotencyRecord
from ledgers.services import api_key_create
from tests.conftest import Api, assert_problem

pytestmark = pytest.mark.django_db

NEW_CUSTOMER = {"name": "Acme", "email": "a@example.com"}


class TestAuth:
    def test_missing_key_is_401_with_challenge(self, anonymous_api):
        response = anonymous_api.get("/v1/customers")
        assert_problem(response, 401, "not_authenticated")
        assert response["WWW-Authenticate"] == "Bearer"

    def test_unknown_key_is_401(self):
        assert_problem(Api("bk_nope_nope").get("/v1/customers"), 401, "authentication_failed")

    def test_malformed_header_is_401(self, api_key):
        response = Client().get("/v1/customers", HTTP_AUTHORIZATION=f"Token {api_key.raw}")
        assert_problem(response, 401)

    def test_revoked_key_is_401(self, api, api_key):
        ApiKey.objects.filter(pk=api_key.pk).update(revoked_at="2026-01-01T00:00:00Z")
        assert_problem(api.get("/v1/customers"), 401)

    def test_scopes(self, api_with_scopes):
        reader = api_with_scopes("read")
        assert reader.get("/v1/customers").status_code == 200
        body = assert_problem(reader.post("/v1/customers", NEW_CUSTOMER), 403, "permission_denied")
        assert "write" in body["detail"]
        writer = api_with_scopes("write")
        assert writer.post("/v1/customers", NEW_CUSTOMER).status_code == 201
        assert_problem(writer.get("/v1/customers"), 403)
        assert_problem(api_with_scopes("ingest").get("/v1/customers"), 403)
        assert Customer.objects.count() == 1

    def test_only_hash_is_stored(self, api_key):
        stored = ApiKey.objects.get(pk=api_key.pk)
        assert api_key.raw not in (stored.key_hash, stored.prefix, stored.name)
        assert len(stored.key_hash) == 64


class TestProblems:
    def test_unknown_route_is_404_problem(self, api):
        assert_problem(api.get("/v1/nothing-here"), 404, "not_found")

    def test_wrong_method_is_405_problem(self, api):
        assert_problem(api.delete("/v1/customers"), 405, "method_not_allowed")

    def test_unsupported_media_type_is_415(self, api, api_key):
        response = Client().post("/v1/customers", "name=x", content_type="text/plain",
                                 HTTP_AUTHORIZATION=f"Bearer {api_key.raw}")
        assert_problem(response, 415)

    def test_oversized_body_is_413_and_writes_nothing(self, api):
        big = '{"name": "' + "x" * (5 * 1024 * 1024) + '", "email": "a@example.com"}'
        assert_problem(api.post("/v1/customers", raw=big), 413, "body_too_large")
        assert Customer.objects.count() == 0

    @pytest.mark.urls("tests.ledgers.urls_boom")
    def test_unexpected_error_is_generic_500_and_logged(self, api, caplog):
        body = assert_problem(api.get("/v1/boom"), 500, "internal_error")
        assert "hunter2" not in str(body)
        assert "secret internals" in caplog.text

    @pytest.mark.urls("tests.ledgers.urls_boom")
    def test_failed_request_rolls_back_its_writes(self, api):
        assert_problem(api.post("/v1/boom", {}), 500)
        assert Customer.objects.count() == 0

    @pytest.mark.urls("tests.ledgers.urls_boom")
    def test_error_outside_drf_is_problem_json(self):
        response = Client(raise_request_exception=False).get("/plain-boom")
        assert_problem(response, 500, "internal_error")
        assert b"plain view internals" not in response.content


class TestIdempotency:
    def test_same_key_same_body_replays_without_doing_work_again(self, api):
        headers = {"Idempotency-Key": "k-1"}
        first = api.post("/v1/customers", NEW_CUSTOMER, headers=headers)
        second = api.post("/v1/customers", NEW_CUSTOMER, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        assert second["Idempotent-Replayed"] == "true"
        assert Customer.objects.count() == 1

    def test_same_key_different_body_is_409(self, api):
        headers = {"Idempotency-Key": "k-2"}
        api.post("/v1/customers", NEW_CUSTOMER, headers=headers)
        response = api.post("/v1/customers", {**NEW_CUSTOMER, "name": "Other"}, headers=headers)
        assert_problem(response, 409, "idempotency_key_reused")
        assert Customer.objects.count() == 1

    def test_errors_are_replayed_too(self, api):
        headers = {"Idempotency-Key": "k-3"}
        first = api.post("/v1/customers", {"name": "x"}, headers=headers)
        second = api.post("/v1/customers", {"name": "x"}, headers=headers)
        assert first.status_code == second.status_code == 400
        assert first.content == second.content

    def test_keys_are_scoped_per_api_key(self, api):
        headers = {"Idempotency-Key": "shared"}
        api.post("/v1/customers", NEW_CUSTOMER, headers=headers)
        _, other_raw = api_key_create(name="other")
        response = Api(other_raw).post("/v1/customers", NEW_CUSTOMER, headers=headers)
        assert response.status_code == 201
        assert Customer.objects.count() == 2

    def test_expired_record_is_removed_by_job_and_key_works_afresh(self, api):
        from datetime import timedelta

        from django.utils import timezone

        from billing_project import jobs

        headers = {"Idempotency-Key": "old"}
        api.post("/v1/customers", NEW_CUSTOMER, headers=headers)
        IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
        assert jobs.run("expire_idempotency_keys")["deleted"] == 1
        assert api.post("/v1/customers", NEW_CUSTOMER, headers=headers).status_code == 201
        assert Customer.objects.count() == 2

    def test_overlong_key_is_400(self, api):
        assert_problem(api.post("/v1/customers", NEW_CUSTOMER,
                                headers={"Idempotency-Key": "x" * 300}), 400)


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_never_double_write(api_key):
    """Eight threads send the same keyed request at once: one customer, identical answers."""
    barrier = threading.Barrier(8)
    results = []

    def send():
        try:
            barrier.wait()
            response = Api(api_key.raw).post("/v1/customers", NEW_CUSTOMER,
                                             headers={"Idempotency-Key": "race"})
            results.append((response.status_code, response.json().get("id")))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Customer.objects.count() == 1
    assert {status for status, _ in results} == {201}
    assert {cid for _, cid in results} == {Customer.objects.get().id}


class TestDecimals:
    @pytest.mark.parametrize("raw, expected", [
        (Decimal("0.1"), Decimal("0.1")), ("0.10", Decimal("0.1")), (10, Decimal("10")),
        ("1E+1", Decimal("10")), ("-3.000000000001", Decimal("-3.000000000001")),
        ("999999999999999999.999999999999", Decimal("999999999999999999.999999999999")),
        ("0.1000000000000", Decimal("0.1")),
    ])
    def test_parse(self, raw, expected):
        value = parse_decimal(raw)
        assert value == expected and str(value) == str(expected)

    @pytest.mark.parametrize("raw", ["NaN", "Infinity", "-inf", "1e18", "-1000000000000000000",
                                     "0.0000000000001", "abc", "", True, None, 0.5, [1]])
    def test_reject(self, raw):
        with pytest.raises(DecimalInputError):
            parse_decimal(raw)

    def test_json_round_trip_is_exact(self):
        data = json_loads(b'{"a": 0.1, "b": 123456789012345678.123456789012, "c": 5}')
        assert data["a"] == Decimal("0.1")
        assert data["b"] == Decimal("123456789012345678.123456789012")
        out = json_dumps({"a": normalize(Decimal("0.10")), "b": normalize(Decimal("1E+1"))})
        assert out == b'{"a":0.1,"b":10}'

    def test_nan_literal_is_malformed_json(self, api):
        assert_problem(api.post("/v1/customers", raw='{"name": NaN}'), 400, "malformed_request")


class TestDocsAndHealth:
    def test_openapi_document(self, api):
        response = Client().get("/v1/openapi.json")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
        schema = json.loads(response.content)
        assert schema["openapi"].startswith("3.")
        assert "/v1/customers" in schema["paths"]
        assert "/v1/customers/external_customer_id/{key}" in schema["paths"]

    def test_docs_page_renders_offline(self):
        response = Client().get("/api/docs/")
        assert response.status_code == 200
        assert b"swagger" in response.content.lower()
        assert b"cdn.jsdelivr" not in response.content

    def test_healthz_and_readyz(self):
        assert Client().get("/healthz").json() == {"status": "ok"}
        body = Client().get("/readyz").json()
        assert body["status"] == "ready"
        assert body["checks"] == {"database": "ok", "broker": "ok"}


class TestNulCharacters:
    """PostgreSQL text cannot store U+0000: refused with a 400 wherever it can arrive."""

    def test_in_json_body(self, api):
        body = '{"name": "a\\u0000b", "email": "a@example.com"}'
        assert_problem(api.post("/v1/customers", raw=body), 400, "malformed_request")
        body = '{"name": "x", "email": "a@example.com", "metadata": {"k\\u0000": "v"}}'
        assert_problem(api.post("/v1/customers", raw=body), 400, "malformed_request")
        assert Customer.objects.count() == 0

    def test_escaped_backslash_is_not_nul(self, api):
        body = '{"name": "a\\\\u0000b", "email": "a@example.com"}'
        response = api.post("/v1/customers", raw=body)
        assert response.status_code == 201
        assert response.json()["name"] == "a\\u0000b"

    def test_in_url(self, api):
        assert_problem(api.get("/v1/customers/cus_%00x"), 400, "nul_character")
        assert_problem(api.get("/v1/customers", {"external_customer_id": "a\x00"}), 400)
