"""expire_credits and run_top_ups: idempotent, per-crossing, customer time zone."""

import threading
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from billing_project.jobs import run as run_job
from grants import selectors, services
from grants.models import CreditBlock
from ledgers.models import LedgerEntry
from tests.grants.factories import CustomerFactory, decrement, increment

D = Decimal


@pytest.mark.django_db
def test_expire_credits_writes_one_entry_per_block_at_the_local_day_boundary():
    customer = CustomerFactory(timezone="America/New_York")
    tz = ZoneInfo("America/New_York")
    boundary = datetime(2099, 3, 10, tzinfo=tz)  # an expiry_date given as 2099-03-10
    block = increment(customer, 30, expiry_date=boundary)
    increment(customer, 5)
    decrement(customer, 10)
    before = run_job("expire_credits", as_of=boundary - timedelta(seconds=1))
    assert before["expiry_entries"] == 0
    summary = run_job("expire_credits", as_of=boundary)
    assert summary == {"ledgers": 1, "expiry_entries": 1, "duplicates": 0}
    expiry = LedgerEntry.objects.get(entry_type="credit_block_expiry")
    assert expiry.credit_block_id == block.id and expiry.amount == D(20)
    assert run_job("expire_credits", as_of=boundary)["expiry_entries"] == 0
    call_command("run_job", "expire_credits", "--as-of", boundary.isoformat())
    assert LedgerEntry.objects.filter(entry_type="credit_block_expiry").count() == 1
    block.refresh_from_db()
    assert block.status == "expired"


@pytest.mark.django_db
def test_run_top_ups_fires_once_per_crossing():
    customer = CustomerFactory()
    increment(customer, 20)
    services.top_up_create(customer=customer, actor="t", currency="USD", threshold=D(10),
                           amount=D(50), per_unit_cost_basis=D(1),
                           invoice_settings={"auto_collection": False},
                           expires_after=1, expires_after_unit="month")
    now = timezone.now()
    assert run_job("run_top_ups", as_of=now) == {"top_ups": 0}
    decrement(customer, 15)  # 5 < 10: crossing
    assert run_job("run_top_ups", as_of=now) == {"top_ups": 1}
    assert run_job("run_top_ups", as_of=now) == {"top_ups": 0}
    assert selectors.credit_balance(customer=customer).balance == D(55)
    block = CreditBlock.objects.get(source="top_up")
    assert block.expires_at is not None and block.per_unit_cost_basis == D(1)
    decrement(customer, 50)  # a new crossing: the last run re-armed the rule at 55
    assert run_job("run_top_ups", as_of=now) == {"top_ups": 1}


@pytest.mark.django_db(transaction=True)
def test_two_expiry_workers_write_each_expiry_once():
    customers = [CustomerFactory() for _ in range(5)]
    soon = timezone.now() + timedelta(hours=1)
    for customer in customers:
        increment(customer, 10, expiry_date=soon)
        increment(customer, 10, expiry_date=soon + timedelta(milliseconds=1))
    later = soon + timedelta(seconds=1)  # the job's as_of, not the wall clock
    barrier = threading.Barrier(2)
    results = []

    def worker():
        try:
            barrier.wait()
            results.append(run_job("expire_credits", as_of=later))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["expiry_entries"] for r in results) == 10
    assert LedgerEntry.objects.filter(entry_type="credit_block_expiry").count() == 10
