import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction

from ledgers.audit import record_action
from ledgers.models import AuditLog, Customer
from tests.ledgers.factories import CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


def test_changelist_searches_name_email_and_external_id(staff_client):
    CustomerFactory(name="Acme Corp", email="money@acme.example", external_customer_id="acme-1")
    CustomerFactory(name="Globex", email="ap@globex.example", external_customer_id="gx")
    for term in ("Acme", "money@acme", "acme-1"):
        response = staff_client.get("/admin/ledgers/customer/", {"q": term})
        assert response.status_code == 200
        assert b"Acme Corp" in response.content
        assert b"Globex" not in response.content


def test_change_page_shows_metadata(staff_client):
    customer = CustomerFactory(metadata={"segment": "enterprise"})
    response = staff_client.get(f"/admin/ledgers/customer/{customer.pk}/change/")
    assert response.status_code == 200
    assert b"segment" in response.content and b"enterprise" in response.content


def test_staff_edit_goes_through_service_and_is_audited(staff_client):
    customer = CustomerFactory(name="Before")
    response = staff_client.post(f"/admin/ledgers/customer/{customer.pk}/change/", {
        "name": "After", "email": customer.email,
        "external_customer_id": customer.external_customer_id, "currency": "USD",
        "timezone": "UTC", "allow_negative_balance": "on", "metadata": "{}",
    })
    assert response.status_code == 302, response.content[:2000]
    customer.refresh_from_db()
    assert customer.name == "After"
    audit = AuditLog.objects.get(action="customer.update")
    assert audit.actor == "user:boss"
    assert audit.user.username == "boss"
    assert audit.data["before"]["name"] == "Before"


def test_staff_add_is_audited(staff_client):
    response = staff_client.post("/admin/ledgers/customer/add/", {
        "name": "New Co", "email": "new@example.com", "external_customer_id": "newco",
        "timezone": "UTC", "metadata": "{}", "allow_negative_balance": "on",
    })
    assert response.status_code == 302
    customer = Customer.objects.get(external_customer_id="newco")
    assert AuditLog.objects.get(action="customer.create").target_id == customer.pk


def test_customers_cannot_be_deleted_in_admin(staff_client):
    customer = CustomerFactory()
    response = staff_client.get(f"/admin/ledgers/customer/{customer.pk}/delete/")
    assert response.status_code == 403


def test_audit_log_is_read_only_in_admin(staff_client):
    entry = record_action(actor=None, action="test.thing", target=("x", "1"), reason="why")
    assert staff_client.get("/admin/ledgers/auditlog/").status_code == 200
    assert staff_client.get(f"/admin/ledgers/auditlog/{entry.pk}/change/").status_code == 200
    assert staff_client.post(f"/admin/ledgers/auditlog/{entry.pk}/change/",
                             {"reason": "edited"}).status_code == 403
    assert staff_client.get("/admin/ledgers/auditlog/add/").status_code == 403
    assert staff_client.get(f"/admin/ledgers/auditlog/{entry.pk}/delete/").status_code == 403


def test_audit_rows_are_append_only_in_the_database():
    entry = record_action(actor="system", action="test.thing", target=("x", "1"))
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditLog.objects.filter(pk=entry.pk).update(reason="rewritten")
    with pytest.raises(IntegrityError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM ledgers_auditlog WHERE id = %s", [entry.pk])
    assert AuditLog.objects.get(pk=entry.pk).reason == ""


def test_record_action_labels_actors(api_key):
    user = get_user_model().objects.create_user("clerk")
    assert record_action(actor=user, action="a", target=("t", "1")).actor == "user:clerk"
    by_key = record_action(actor=api_key, action="a", target=("t", "1"), data={"n": 1})
    assert (by_key.actor, by_key.api_key_id, by_key.data) == ("api_key:test", api_key.pk,
                                                              {"n": 1})
    assert record_action(actor=None, action="a", target=("t", "1")).actor == "system"
