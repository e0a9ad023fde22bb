"""Concurrent retries of the same batches from several clients: no duplicate, no loss."""

import random
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from ledgers.services import api_key_create, customer_create
from metering import selectors, services
from metering.models import Event
from tests.conftest import Api
from tests.ledgers.factories import CustomerFactory
from tests.metering.factories import MeterFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def run_threads(targets):
    errors = []

    def wrap(target):
        try:
            target()
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def test_concurrent_retries_of_the_same_batches_over_http():
    customers = [CustomerFactory() for _ in range(3)]
    meter = MeterFactory(aggregation="sum", value_property="n", group_by={"r": "r"})
    unique = MeterFactory(aggregation="unique_count", value_property="u")
    _, raw = api_key_create(name="conc", scopes=["ingest"])
    now = timezone.now()
    events = [{"idempotency_key": f"k{i}", "event_name": "api_call",
               "timestamp": (now - timedelta(seconds=i * 7, microseconds=i)).isoformat(),
               "customer_id": customers[i % 3].pk,
               "properties": {"n": i, "r": "ab"[i % 2], "u": i % 11}} for i in range(600)]
    batches = [events[i:i + 150] for i in range(0, 600, 150)]
    seen = {"ingested": [], "duplicate": []}
    lock = threading.Lock()

    def client(seed):
        api = Api(raw)
        order = batches[:]
        random.Random(seed).shuffle(order)
        for batch in order:
            response = api.post("/v1/ingest?debug=true", {"events": batch})
            assert response.status_code == 200, response.content
            with lock:
                for kind in ("ingested", "duplicate"):
                    seen[kind].extend(response.json()["debug"][kind])

    run_threads([lambda s=s: client(s) for s in range(4)])
    assert sorted(seen["ingested"]) == sorted(e["idempotency_key"] for e in events)
    assert len(seen["duplicate"]) == 3 * 600
    assert Event.objects.count() == 600
    start, end = now - timedelta(hours=2), now + timedelta(seconds=1)
    for index, customer in enumerate(customers):
        expected = sum(i for i in range(600) if i % 3 == index)
        assert selectors.usage_total(meter=meter, customer=customer, start=start,
                                     end=end) == Decimal(expected)
        expected_unique = len({i % 11 for i in range(600) if i % 3 == index})
        assert selectors.usage_total(meter=unique, customer=customer, start=start,
                                     end=end) == expected_unique


def test_customer_created_while_its_events_arrive():
    meter = MeterFactory(aggregation="count", value_property=None)
    now = timezone.now()
    created = {}

    def ingest(offset):
        for batch in range(10):
            services.events_ingest(actor="test", events=[{
                "idempotency_key": f"c{offset}-{batch}-{i}", "event_name": "api_call",
                "timestamp": (now - timedelta(seconds=i)).isoformat(),
                "external_customer_id": "late-co", "properties": {}} for i in range(20)])

    def create():
        created["customer"] = customer_create(actor="test", name="Late", email="l@x.io",
                                              external_customer_id="late-co")

    run_threads([lambda: ingest(0), lambda: ingest(1), create])
    assert Event.objects.filter(customer__isnull=True).count() == 0
    assert selectors.usage_total(meter=meter, customer=created["customer"],
                                 start=now - timedelta(hours=1),
                                 end=now + timedelta(seconds=1)) == 400


def test_meter_created_while_events_arrive():
    customer = CustomerFactory()
    now = timezone.now()
    made = {}

    def ingest(offset):
        for batch in range(10):
            services.events_ingest(actor="test", events=[{
                "idempotency_key": f"m{offset}-{batch}-{i}", "event_name": "api_call",
                "timestamp": (now - timedelta(seconds=i)).isoformat(),
                "customer_id": customer.pk, "properties": {"n": 1}} for i in range(20)])

    def create():
        made["meter"] = services.meter_create(actor="test", slug="late", name="Late",
                                              event_name="api_call", aggregation="sum",
                                              value_property="n")

    run_threads([lambda: ingest(0), create, lambda: ingest(1)])
    assert selectors.usage_total(meter=made["meter"], customer=customer,
                                 start=now - timedelta(hours=1),
                                 end=now + timedelta(seconds=1)) == 400


def test_compaction_while_events_arrive_counts_each_event_once():
    from metering import rollups

    customer = CustomerFactory()
    meter = MeterFactory(aggregation="sum", value_property="n")
    now = timezone.now()
    done = threading.Event()

    def ingest(offset):
        for batch in range(15):
            services.events_ingest(actor="test", events=[{
                "idempotency_key": f"z{offset}-{batch}-{i}", "event_name": "api_call",
                "timestamp": (now - timedelta(seconds=i)).isoformat(),
                "customer_id": customer.pk, "properties": {"n": 2}} for i in range(30)])

    def compactor():
        while not done.is_set():
            rollups.compact()

    def ingesters():
        try:
            run_threads([lambda: ingest(0), lambda: ingest(1), lambda: ingest(2)])
        finally:
            done.set()

    run_threads([ingesters, compactor])
    window = dict(start=now - timedelta(hours=1), end=now + timedelta(seconds=1))
    assert selectors.usage_total(meter=meter, customer=customer, **window) == 3 * 15 * 30 * 2
    rollups.compact()
    assert selectors.usage_total(meter=meter, customer=customer, **window) == 3 * 15 * 30 * 2
