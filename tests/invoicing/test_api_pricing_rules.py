from decimal import Decimal

import pytest

from invoicing.models import Plan, PricingRule
from ledgers.models import AuditLog
from tests.conftest import assert_problem
from tests.invoicing.factories import MeterFactory, PlanFactory, PricingRuleFactory

pytestmark = pytest.mark.django_db


def test_create_and_list_plans(api):
    response = api.post("/v1/plans", {"key": "pro", "name": "Pro", "currency": "usd",
                                       "billing_interval": "month", "unknown": 1})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("plan_")
    assert body["currency"] == "USD"
    assert body["billing_interval"] == "month"
    assert api.get("/v1/plans").json()["data"][0]["id"] == body["id"]
    assert api.get(f"/v1/plans/{body['id']}").json()["key"] == "pro"
    assert AuditLog.objects.filter(action="plan.create", target_id=body["id"]).exists()


def test_plan_key_clash_is_409(api):
    PlanFactory(key="pro")
    assert_problem(api.post("/v1/plans", {"key": "pro", "name": "x", "currency": "USD"}), 409,
                   "duplicate_plan_key")


def test_plan_bad_interval_is_400(api):
    body = assert_problem(api.post("/v1/plans", {"key": "p", "name": "x", "currency": "USD",
                                                 "billing_interval": "fortnight"}), 400)
    assert body["validation_errors"][0]["field"] == "billing_interval"
    assert not Plan.objects.exists()


def test_customer_plan_id_is_validated_against_plans(api):
    plan = PlanFactory()
    ok = api.post("/v1/customers", {"name": "a", "email": "a@example.com", "plan_id": plan.pk})
    assert ok.status_code == 201, ok.content
    assert_problem(api.post("/v1/customers", {"name": "a", "email": "a@example.com",
                                              "plan_id": "plan_nope"}), 400)


@pytest.mark.parametrize("payload,expected", [
    ({"model": "per_unit", "unit_amount": "0.10"}, {"unit_amount": "0.1", "tiers": None}),
    ({"model": "package", "unit_amount": 5, "package_size": 100},
     {"unit_amount": "5", "package_size": 100}),
    ({"model": "graduated", "tiers": [{"up_to": 100, "unit_amount": "0.10"},
                                      {"up_to": None, "unit_amount": "0.05",
                                       "flat_amount": "2.5"}]},
     {"tiers": [{"up_to": "100", "unit_amount": "0.1", "flat_amount": "0"},
                {"up_to": None, "unit_amount": "0.05", "flat_amount": "2.5"}]}),
    ({"model": "volume", "tiers": [{"up_to": "10", "unit_amount": 1},
                                   {"unit_amount": "0.5"}]},
     {"tiers": [{"up_to": "10", "unit_amount": "1", "flat_amount": "0"},
                {"up_to": None, "unit_amount": "0.5", "flat_amount": "0"}]}),
])
def test_create_pricing_rule_models(api, payload, expected):
    plan = PlanFactory()
    meter = MeterFactory(group_by={"region": "region"})
    response = api.post("/v1/pricing_rules", {
        "name": "API calls", "meter_slug": meter.slug, "plan_id": plan.pk, "currency": "USD",
        "filters": {"region": "eu"}, **payload})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("price_")
    assert body["meter_id"] == meter.pk and body["meter_slug"] == meter.slug
    assert body["filters"] == {"region": "eu"}
    for key, value in expected.items():
        assert body[key] == value, key
    assert AuditLog.objects.filter(action="pricing_rule.create", target_id=body["id"]).exists()


@pytest.mark.parametrize("payload,code,field", [
    ({"model": "graduated", "tiers": [{"up_to": 100, "unit_amount": 1},
                                      {"up_to": 50, "unit_amount": 1},
                                      {"up_to": None, "unit_amount": 1}]},
     "tiers_out_of_order", "tiers[1].up_to"),
    ({"model": "volume", "tiers": [{"up_to": 100, "unit_amount": 1},
                                   {"up_to": 100, "unit_amount": 1},
                                   {"up_to": None, "unit_amount": 1}]},
     "tiers_out_of_order", "tiers[1].up_to"),
    ({"model": "graduated", "tiers": [{"up_to": 100, "unit_amount": 1}]},
     "last_tier_bounded", "tiers[0].up_to"),
    ({"model": "per_unit", "unit_amount": "-1"}, "negative_price", "unit_amount"),
    ({"model": "graduated", "tiers": [{"up_to": None, "unit_amount": 1, "flat_amount": -2}]},
     "negative_price", "tiers[0].flat_amount"),
    ({"model": "package", "unit_amount": 1}, "missing_package_size", "package_size"),
    ({"model": "package", "unit_amount": 1, "package_size": "2.5"}, "invalid_package_size",
     "package_size"),
    ({"model": "per_unit"}, "missing_unit_amount", "unit_amount"),
    ({"model": "per_unit", "unit_amount": 1, "tiers": [{"unit_amount": 1}]},
     "unexpected_parameter", "tiers"),
    ({"model": "per_unit", "unit_amount": 1, "currency": "EUR"}, "currency_mismatch",
     "currency"),
    ({"model": "per_unit", "unit_amount": 1, "meter_slug": "nope"}, "unknown_meter",
     "meter_slug"),
    ({"model": "per_unit", "unit_amount": 1, "meter_id": "mtr_nope", "meter_slug": None},
     "unknown_meter", "meter_id"),
    ({"model": "per_unit", "unit_amount": 1, "plan_id": "plan_nope"}, "unknown_plan",
     "plan_id"),
    ({"model": "per_unit", "unit_amount": 1, "filters": {"country": "x"}}, "unknown_group_by",
     "filters"),
])
def test_bad_pricing_rules_are_400_and_write_nothing(api, payload, code, field):
    plan = PlanFactory(currency="USD")
    meter = MeterFactory()
    body = {"name": "r", "meter_slug": meter.slug, "plan_id": plan.pk, "currency": "USD",
            **payload}
    body = {k: v for k, v in body.items() if v is not None}
    problem = assert_problem(api.post("/v1/pricing_rules", body), 400, code)
    assert problem["validation_errors"][0]["field"] == field
    assert not PricingRule.objects.exists()
    assert not AuditLog.objects.filter(action="pricing_rule.create").exists()


def test_wrong_types_are_400_per_field(api):
    meter = MeterFactory()
    problem = assert_problem(api.post("/v1/pricing_rules", {
        "name": "r", "meter_slug": meter.slug, "currency": "USD", "model": "per_unit",
        "unit_amount": "abc", "filters": "x"}), 400, "validation_failed")
    assert {e["field"] for e in problem["validation_errors"]} == {"unit_amount", "filters"}


def test_list_filters_and_archive(api):
    plan = PlanFactory()
    rule = PricingRuleFactory(plan=plan)
    other = PricingRuleFactory(plan=None)
    assert [r["id"] for r in api.get("/v1/pricing_rules", {"plan_id": plan.pk}).json()["data"]] \
        == [rule.pk]
    assert [r["id"] for r in api.get("/v1/pricing_rules",
                                     {"meter_id": other.meter_id}).json()["data"]] == [other.pk]
    response = api.delete(f"/v1/pricing_rules/{rule.pk}")
    assert response.status_code == 200, response.content
    assert response.json()["archived_at"] is not None
    ids = [r["id"] for r in api.get("/v1/pricing_rules").json()["data"]]
    assert ids == [other.pk]
    ids = [r["id"] for r in api.get("/v1/pricing_rules", {"include_archived": "true"})
           .json()["data"]]
    assert set(ids) == {rule.pk, other.pk}
    assert api.get(f"/v1/pricing_rules/{rule.pk}").json()["archived_at"] is not None
    assert_problem(api.delete("/v1/pricing_rules/price_nope"), 404, "pricing_rule_not_found")


def test_rule_constraints_hold_in_the_database():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError, match="pricingrule_unit_amount_not_negative"), \
            transaction.atomic():
        PricingRuleFactory(unit_amount=Decimal("-1"))
    with pytest.raises(IntegrityError, match="pricingrule_parameters_match_model"), \
            transaction.atomic():
        PricingRuleFactory(model="graduated", tiers=None, unit_amount=None)
