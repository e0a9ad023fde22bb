import json
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from billing_project.api import format_timestamp
from billing_project.jobs import load_jobs
from invoicing import services
from invoicing.models import Invoice
from tests.invoicing.conftest import NOV, OCT
from tests.ledgers.factories import CustomerFactory


def test_jobs_are_registered():
    jobs = load_jobs()
    assert {"settle_usage", "close_billing_periods"} <= set(jobs)


@pytest.mark.django_db
def test_run_job_command_closes_periods(world, settings):
    settings.BILLING_INVOICE_GRACE_PERIOD = timedelta(hours=6)
    out = StringIO()
    call_command("run_job", "close_billing_periods", "--as-of",
                 format_timestamp(NOV + timedelta(hours=1)), stdout=out)
    assert json.loads(out.getvalue().strip().splitlines()[-1])["created"] == 1
    assert Invoice.objects.get().status == "draft"
    call_command("run_job", "close_billing_periods", "--as-of",
                 format_timestamp(NOV + timedelta(hours=7)), stdout=StringIO())
    assert Invoice.objects.get().status == "issued"
    out = StringIO()
    call_command("run_job", "settle_usage", "--as-of",
                 format_timestamp(NOV + timedelta(hours=7)), stdout=out)
    assert "settle_usage" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_concurrent_issues_get_gap_free_numbers(world):
    invoices = []
    for _ in range(6):
        customer = CustomerFactory(plan_id=world["plan"].pk, billing_anchor=OCT,
                                   created_at=OCT)
        invoices.append(services.invoice_create_for_period(
            customer=customer, period_start=OCT, period_end=NOV)[0])
    barrier = threading.Barrier(len(invoices))
    errors = []

    def issue(invoice):
        try:
            barrier.wait()
            services.invoice_issue(invoice=invoice, actor="test")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=issue, args=(i,)) for i in invoices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    numbers = sorted(Invoice.objects.values_list("invoice_number", flat=True))
    assert numbers == [f"INV-{n:06d}" for n in range(1, 7)]
