from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from ledgers.models import AuditLog
from metering.models import Event, Meter
from tests.ledgers.factories import CustomerFactory
from tests.metering.factories import MeterFactory, event, ingest

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/metering/event/"


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def events():
    customer = CustomerFactory(external_customer_id="acme-admin")
    now = timezone.now() - timedelta(minutes=3)
    ingest(event(customer, ts=now, key="evt-a", name="tokens", n=1),
           event(customer, ts=now, key="evt-b", name="calls", n=2))
    return customer


def test_changelist_searches_key_customer_and_name(staff_client, events):
    for term, present, absent in (("evt-a", b"evt-a", b"evt-b"),
                                  ("acme-admin", b"evt-a", b"nothing"),
                                  ("calls", b"evt-b", b"evt-a")):
        response = staff_client.get(CHANGELIST, {"q": term})
        assert response.status_code == 200
        assert present in response.content and absent not in response.content
    day = timezone.now()
    response = staff_client.get(CHANGELIST, {"timestamp__year": day.year})
    assert response.status_code == 200


def test_change_page_shows_properties_and_history(staff_client, events):
    response = staff_client.get(f"{CHANGELIST}evt-a/change/")
    assert response.status_code == 200
    assert b"&quot;n&quot;: 1" in response.content or b'"n": 1' in response.content


def test_deprecate_needs_confirmation_and_reason(staff_client, events):
    data = {"action": "deprecate_events", ACTION_CHECKBOX_NAME: ["evt-a"]}
    page = staff_client.post(CHANGELIST, data)
    assert page.status_code == 200 and b"Yes, deprecate" in page.content
    assert not Event.objects.get(pk="evt-a").deprecated
    missing_reason = staff_client.post(CHANGELIST, {**data, "confirm": "yes", "reason": ""})
    assert missing_reason.status_code == 200
    assert not Event.objects.get(pk="evt-a").deprecated
    done = staff_client.post(CHANGELIST, {**data, "confirm": "yes", "reason": "test data"})
    assert done.status_code == 302
    assert Event.objects.get(pk="evt-a").deprecated
    audit = AuditLog.objects.get(action="event.deprecate")
    assert audit.reason == "test data" and audit.actor == "user:boss"


def test_amend_through_admin(staff_client, events):
    data = {"action": "amend_event", ACTION_CHECKBOX_NAME: ["evt-a"]}
    page = staff_client.post(CHANGELIST, data)
    assert b"Yes, amend" in page.content
    bad = staff_client.post(CHANGELIST, {**data, "confirm": "yes", "reason": "fix",
                                         "event_name": "tokens", "properties": "[1]"})
    assert bad.status_code == 200 and b"must be a JSON object" in bad.content
    done = staff_client.post(CHANGELIST, {**data, "confirm": "yes", "reason": "fix",
                                          "event_name": "tokens",
                                          "properties": '{"n": 0.25}'})
    assert done.status_code == 302
    amended = Event.objects.get(pk="evt-a")
    assert amended.properties == {"n": Decimal("0.25")}
    assert AuditLog.objects.get(action="event.amend").reason == "fix"


def test_actions_need_change_permission(client, events):
    user = get_user_model().objects.create_user("viewer", "v@example.com", "pw",
                                                is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_event"))
    client.force_login(user)
    response = client.post(CHANGELIST, {"action": "deprecate_events",
                                        ACTION_CHECKBOX_NAME: ["evt-a"], "confirm": "yes",
                                        "reason": "x"})
    assert not Event.objects.get(pk="evt-a").deprecated
    assert response.status_code in (200, 302)


def test_meter_admin_fixes_immutable_fields(staff_client):
    meter = MeterFactory(slug="m1", aggregation="sum", value_property="n")
    response = staff_client.get(f"/admin/metering/meter/{meter.pk}/change/")
    assert response.status_code == 200
    assert b'name="aggregation"' not in response.content
    assert b'name="value_property"' not in response.content
    assert b'name="event_name"' not in response.content
    saved = staff_client.post(f"/admin/metering/meter/{meter.pk}/change/", {
        "name": "Renamed", "description": "", "group_by": '{"r": "region"}',
        "aggregation": "count", "event_name": "other"})
    assert saved.status_code == 302, saved.content[:3000]
    meter.refresh_from_db()
    assert (meter.name, meter.aggregation, meter.event_name) == ("Renamed", "sum", "api_call")
    assert meter.group_by == {"r": "region"}
    assert AuditLog.objects.filter(action="meter.update").exists()


def test_meter_admin_add_validates(staff_client):
    response = staff_client.post("/admin/metering/meter/add/", {
        "slug": "m2", "name": "M2", "event_name": "x", "aggregation": "sum",
        "value_property": "", "group_by": "{}", "description": ""})
    assert response.status_code == 200
    assert not Meter.objects.exists()
    response = staff_client.post("/admin/metering/meter/add/", {
        "slug": "m2", "name": "M2", "event_name": "x", "aggregation": "count",
        "value_property": "", "group_by": "{}", "description": ""})
    assert response.status_code == 302
    assert AuditLog.objects.filter(action="meter.create").exists()
