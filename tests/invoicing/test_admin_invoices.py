from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from invoicing import services
from invoicing.models import CreditNote, Invoice, PricingRule
from ledgers.models import AuditLog
from tests.invoicing.conftest import NOV, OCT
from tests.invoicing.factories import MeterFactory, PlanFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


def _action(client, action, invoice, **data):
    return client.post("/admin/invoicing/invoice/", {
        "action": action, "_selected_action": [invoice.pk], **data})


@pytest.fixture
def invoice(world):
    invoice, _ = services.invoice_create_for_period(customer=world["customer"],
                                                    period_start=OCT, period_end=NOV)
    return invoice


def test_invoice_pages_show_line_items_and_hosted_link(staff_client, invoice):
    response = staff_client.get("/admin/invoicing/invoice/")
    assert response.status_code == 200
    assert invoice.hosted_path.encode() in response.content
    page = staff_client.get(f"/admin/invoicing/invoice/{invoice.pk}/change/")
    assert page.status_code == 200
    assert b"Storage" in page.content and b"17.5" in page.content


def test_issue_needs_confirmation_and_reason(staff_client, invoice):
    page = _action(staff_client, "issue_invoices", invoice)
    assert page.status_code == 200 and b"are you sure" in page.content
    missing = _action(staff_client, "issue_invoices", invoice, confirm="yes", reason="")
    assert missing.status_code == 200  # form shown again with the error
    invoice.refresh_from_db()
    assert invoice.status == "draft"
    done = _action(staff_client, "issue_invoices", invoice, confirm="yes", reason="month end")
    assert done.status_code == 302
    invoice.refresh_from_db()
    assert invoice.status == "issued"
    audit = AuditLog.objects.get(action="invoice.issue", target_id=invoice.pk)
    assert audit.actor == "user:boss" and audit.reason == "month end"
    assert audit.data["before"]["status"] == "draft"


def test_mark_paid_refund_and_void_through_admin(staff_client, invoice):
    services.invoice_issue(invoice=invoice, actor="test")
    _action(staff_client, "mark_paid", invoice, confirm="yes", reason="wire received",
            external_id="wire-1")
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.payment_external_id == "wire-1"
    too_much = _action(staff_client, "refund_invoices", invoice, confirm="yes",
                       reason="oops", amount="100")
    assert too_much.status_code == 302
    assert not CreditNote.objects.exists()
    _action(staff_client, "refund_invoices", invoice, confirm="yes", reason="goodwill",
            amount="5")
    assert CreditNote.objects.get().amount == D("5")
    _action(staff_client, "void_invoices", invoice, confirm="yes", reason="duplicate")
    invoice.refresh_from_db()
    assert invoice.status == "void"
    assert AuditLog.objects.filter(target_id=invoice.pk, action="invoice.void",
                                   reason="duplicate").exists()


def test_actions_need_permissions(client, invoice):
    user = get_user_model().objects.create_user("clerk", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_invoice"))
    client.force_login(user)
    page = client.get("/admin/invoicing/invoice/")
    assert page.status_code == 200
    assert b"issue_invoices" not in page.content
    _action(client, "issue_invoices", invoice, confirm="yes", reason="x")
    invoice.refresh_from_db()
    assert invoice.status == "draft"
    user.user_permissions.add(Permission.objects.get(codename="issue_invoice"))
    user = get_user_model().objects.get(pk=user.pk)
    client.force_login(user)
    _action(client, "issue_invoices", invoice, confirm="yes", reason="x")
    invoice.refresh_from_db()
    assert invoice.status == "issued"
    assert Invoice.objects.get(pk=invoice.pk).invoice_number == "INV-000001"


def test_pricing_rule_admin_validates(staff_client):
    plan = PlanFactory(currency="USD")
    meter = MeterFactory()
    base = {"name": "r", "meter_slug": meter.slug, "plan": plan.pk, "currency": "USD",
            "filters": "{}"}
    bad = staff_client.post("/admin/invoicing/pricingrule/add/", {
        **base, "model": "graduated",
        "tiers": '[{"up_to": 10, "unit_amount": 1}, {"up_to": 5, "unit_amount": 1}, '
                 '{"up_to": null, "unit_amount": 1}]'})
    assert bad.status_code == 200 and b"must be greater than the previous" in bad.content
    mismatch = staff_client.post("/admin/invoicing/pricingrule/add/", {
        **base, "model": "per_unit", "unit_amount": "1", "currency": "EUR", "tiers": ""})
    assert mismatch.status_code == 200 and b"differs from the plan" in mismatch.content
    assert not PricingRule.objects.exists()
    ok = staff_client.post("/admin/invoicing/pricingrule/add/", {
        **base, "model": "graduated", "tiers": '[{"up_to": 10, "unit_amount": 0.5}, '
                                               '{"up_to": null, "unit_amount": 0.25}]'})
    assert ok.status_code == 302, ok.content[:3000]
    rule = PricingRule.objects.get()
    assert rule.tiers[0]["unit_amount"] == "0.5" and rule.meter_id == meter.pk
    assert AuditLog.objects.filter(action="pricing_rule.create", actor="user:boss").exists()
    staff_client.post("/admin/invoicing/pricingrule/", {
        "action": "archive_rules", "_selected_action": [rule.pk], "confirm": "yes",
        "reason": "replaced"})
    rule.refresh_from_db()
    assert rule.archived_at is not None


def test_plan_admin_creates_through_service(staff_client):
    response = staff_client.post("/admin/invoicing/plan/add/", {
        "key": "pro", "name": "Pro", "currency": "usd", "billing_interval": "month"})
    assert response.status_code == 302, response.content[:2000]
    assert AuditLog.objects.filter(action="plan.create").exists()


def _rule_form(rule, **changes):
    data = {"name": rule.name, "model": rule.model,
            "unit_amount": "" if rule.unit_amount is None else str(rule.unit_amount),
            "tiers": "" if rule.tiers is None else __import__("json").dumps(rule.tiers),
            "package_size": rule.package_size or "", "filters": "{}"}
    data.update(changes)
    return data


def test_unused_rule_is_editable_with_validation(staff_client, world):
    rule = world["rules"][0]
    url = f"/admin/invoicing/pricingrule/{rule.pk}/change/"
    bad = staff_client.post(url, _rule_form(rule, unit_amount="-1"))
    assert bad.status_code == 200 and b"must not be negative" in bad.content
    ok = staff_client.post(url, _rule_form(rule, unit_amount="0.02", name="Calls v2"))
    assert ok.status_code == 302, ok.content[:2000]
    rule.refresh_from_db()
    assert rule.unit_amount == D("0.02") and rule.name == "Calls v2"
    audit = AuditLog.objects.get(action="pricing_rule.update", target_id=rule.pk)
    assert audit.data["before"]["unit_amount"].startswith("0.015")
    to_tiers = staff_client.post(url, _rule_form(
        rule, model="volume", unit_amount="0.02",
        tiers='[{"up_to": 10, "unit_amount": 1}, {"up_to": null, "unit_amount": 0.5}]'))
    assert to_tiers.status_code == 302, to_tiers.content[:3000]
    rule.refresh_from_db()
    assert rule.model == "volume" and rule.unit_amount is None and len(rule.tiers) == 2


def test_rule_used_by_an_issued_invoice_only_renames(staff_client, invoice, world):
    from billing_project.errors import Conflict

    services.invoice_issue(invoice=invoice, actor="test")
    rule = world["rules"][0]
    page = staff_client.get(f"/admin/invoicing/pricingrule/{rule.pk}/change/")
    assert page.status_code == 200 and b'name="unit_amount"' not in page.content
    staff_client.post(f"/admin/invoicing/pricingrule/{rule.pk}/change/", {"name": "Renamed"})
    rule.refresh_from_db()
    assert rule.name == "Renamed" and rule.unit_amount == D("0.015")
    with pytest.raises(Conflict) as exc:
        services.pricing_rule_update(actor="t", rule=rule, unit_amount=D(1))
    assert exc.value.code == "pricing_rule_in_use"


def test_read_only_pages_for_credit_notes_and_settlements(staff_client, invoice):
    for url in ("/admin/invoicing/creditnote/", "/admin/invoicing/usagesettlement/",
                "/admin/invoicing/plan/", "/admin/invoicing/pricingrule/"):
        assert staff_client.get(url).status_code == 200, url
