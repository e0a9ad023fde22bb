from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from entitlements import services
from entitlements.models import EntitlementGrant, EntitlementReset
from ledgers.models import AuditLog
from tests.entitlements.factories import FeatureFactory
from tests.ledgers.factories import CustomerFactory
from tests.metering.factories import MeterFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def entitlement():
    meter = MeterFactory()
    feature = FeatureFactory(meter=meter, key="api_calls")
    customer = CustomerFactory(external_customer_id="acme")
    now = timezone.now()
    ent = services.entitlement_create(actor="t", customer=customer, type="metered",
                                      feature_key=feature.key,
                                      usage_period={"interval": "month",
                                                    "anchor": now - timedelta(days=3)})
    services.grant_create(actor="t", entitlement=ent, amount=Decimal("42.5"),
                          effective_at=now - timedelta(days=3), expiration=None)
    return ent


def test_changelist_shows_current_value(staff_client, entitlement):
    response = staff_client.get("/admin/entitlements/entitlement/", {"q": "acme"})
    assert response.status_code == 200
    assert b"api_calls" in response.content and b"42.5" in response.content
    detail = staff_client.get(f"/admin/entitlements/entitlement/{entitlement.pk}/change/")
    assert detail.status_code == 200 and b"42.5" in detail.content


def test_reset_action_confirms_requires_reason_and_audits(staff_client, entitlement):
    url = "/admin/entitlements/entitlement/"
    base = {"action": "reset_usage", helpers.ACTION_CHECKBOX_NAME: [entitlement.pk]}
    page = staff_client.post(url, base)
    assert page.status_code == 200 and b"Reset usage" in page.content
    assert b'name="reason"' in page.content

    no_reason = staff_client.post(url, {**base, "confirm": "yes", "reason": ""})
    assert no_reason.status_code == 200
    assert not EntitlementReset.objects.exists()

    done = staff_client.post(url, {**base, "confirm": "yes", "reason": "support ticket 7",
                                   "preserve_overage": "on"})
    assert done.status_code == 302
    reset = EntitlementReset.objects.get()
    assert reset.preserve_overage is True and reset.retain_anchor is False
    log = AuditLog.objects.get(action="entitlement.reset")
    assert log.reason == "support ticket 7" and log.actor == "user:boss"


def test_void_action(staff_client, entitlement):
    grant = EntitlementGrant.objects.get()
    url = "/admin/entitlements/entitlementgrant/"
    base = {"action": "void_grants", helpers.ACTION_CHECKBOX_NAME: [grant.pk]}
    page = staff_client.post(url, base)
    assert page.status_code == 200 and b"not retroactive" in page.content
    done = staff_client.post(url, {**base, "confirm": "yes", "reason": "duplicate"})
    assert done.status_code == 302
    grant.refresh_from_db()
    assert grant.voided_at is not None
    assert AuditLog.objects.get(action="entitlement_grant.void").reason == "duplicate"


def test_actions_need_permission(client, entitlement):
    user = get_user_model().objects.create_user("viewer", "v@example.com", "pw",
                                                is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_entitlement", "view_entitlementgrant"]))
    client.force_login(user)
    grant = EntitlementGrant.objects.get()
    page = client.get("/admin/entitlements/entitlement/")
    assert page.status_code == 200 and b"reset_usage" not in page.content
    client.post("/admin/entitlements/entitlement/", {
        "action": "reset_usage", helpers.ACTION_CHECKBOX_NAME: [entitlement.pk],
        "confirm": "yes", "reason": "x"})
    client.post("/admin/entitlements/entitlementgrant/", {
        "action": "void_grants", helpers.ACTION_CHECKBOX_NAME: [grant.pk],
        "confirm": "yes", "reason": "x"})
    assert not EntitlementReset.objects.exists()
    grant.refresh_from_db()
    assert grant.voided_at is None
