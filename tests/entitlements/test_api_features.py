import pytest

from entitlements.models import Feature
from ledgers.models import AuditLog
from metering import services as metering_services
from tests.conftest import assert_problem
from tests.metering.factories import MeterFactory

pytestmark = pytest.mark.django_db


def test_create_get_list_archive(api):
    meter = MeterFactory(group_by={"model": "model"})
    r = api.post("/v1/features", {"key": "ai_tokens", "name": "AI tokens",
                                  "meter_slug": meter.slug,
                                  "meter_group_by_filters": {"model": "gpt"},
                                  "metadata": {"a": "b"}, "unknown": 1})
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["key"] == "ai_tokens" and body["meter_id"] == meter.pk
    assert body["meter_group_by_filters"] == {"model": "gpt"}
    assert body["archived_at"] is None
    assert api.get(f"/v1/features/{body['id']}").json()["key"] == "ai_tokens"
    assert api.get("/v1/features/ai_tokens").json()["id"] == body["id"]
    listed = api.get("/v1/features").json()
    assert [f["id"] for f in listed["data"]] == [body["id"]]
    assert AuditLog.objects.filter(action="feature.create", target_id=body["id"]).exists()

    r = api.delete("/v1/features/ai_tokens")
    assert r.status_code == 200 and r.json()["archived_at"]
    assert api.get("/v1/features").json()["data"] == []
    assert len(api.get("/v1/features", {"include_archived": "true"}).json()["data"]) == 1
    assert_problem(api.delete(f"/v1/features/{body['id']}"), 409, "feature_already_archived")
    # the key can be reused
    again = api.post("/v1/features", {"key": "ai_tokens", "name": "AI tokens v2"})
    assert again.status_code == 201
    assert api.get("/v1/features/ai_tokens").json()["id"] == again.json()["id"]


def test_duplicate_key_conflict_names_the_feature(api):
    first = api.post("/v1/features", {"key": "sso", "name": "SSO"}).json()
    body = assert_problem(api.post("/v1/features", {"key": "sso", "name": "SSO 2"}), 409,
                          "feature_key_exists")
    assert body["conflicting_id"] == first["id"]


@pytest.mark.parametrize("key", ["Bad", "a__b", "_a", "a_", "a-b", "", "a b", "x" * 65])
def test_bad_keys(api, key):
    assert_problem(api.post("/v1/features", {"key": key, "name": "X"}), 400)
    assert not Feature.objects.exists()


def test_bad_meter_references(api):
    max_meter = MeterFactory(aggregation="max")
    grouped = MeterFactory(group_by={"model": "model"})
    assert_problem(api.post("/v1/features", {"key": "a", "name": "A", "meter_slug": "nope"}),
                   400, "meter_not_found")
    assert_problem(api.post("/v1/features", {"key": "a", "name": "A",
                                             "meter_slug": max_meter.slug}),
                   400, "meter_aggregation_not_supported")
    assert_problem(api.post("/v1/features", {"key": "a", "name": "A", "meter_slug": grouped.slug,
                                             "meter_group_by_filters": {"region": "eu"}}),
                   400, "invalid_group_by_filter")
    assert_problem(api.post("/v1/features", {"key": "a", "name": "A",
                                             "meter_group_by_filters": {"region": "eu"}}),
                   400, "filters_without_meter")
    assert_problem(api.post("/v1/features", {"key": "a", "name": 5,
                                             "meter_group_by_filters": "x"}), 400)
    archived = MeterFactory()
    metering_services.meter_archive(meter=archived, actor="t")
    assert_problem(api.post("/v1/features", {"key": "a", "name": "A",
                                             "meter_slug": archived.slug}), 400, "meter_archived")
    assert not Feature.objects.exists()


def test_unknown_feature_404(api):
    assert_problem(api.get("/v1/features/nope"), 404, "feature_not_found")
    assert_problem(api.delete("/v1/features/nope"), 404, "feature_not_found")


def test_scopes(api_with_scopes):
    read_only = api_with_scopes("read")
    assert read_only.get("/v1/features").status_code == 200
    assert_problem(read_only.post("/v1/features", {"key": "a", "name": "A"}), 403)
