"""The official `orb-billing` client works for ingestion, amend, deprecate, search, backfills."""

from datetime import UTC, datetime, timedelta

import orb
import pytest

from tests.ledgers.factories import CustomerFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def orb_client(live_server, api_key):
    return orb.Orb(base_url=live_server.url + "/v1", api_key=api_key.raw, max_retries=0)


def test_events_with_official_client(orb_client):
    customer = CustomerFactory(external_customer_id="acme")
    now = datetime.now(UTC) - timedelta(minutes=1)
    result = orb_client.events.ingest(extra_query={"debug": "true"}, events=[
        {"idempotency_key": "o1", "event_name": "api_call", "timestamp": now,
         "external_customer_id": "acme", "properties": {"tokens": 5}},
        {"idempotency_key": "o2", "event_name": "api_call", "timestamp": now,
         "customer_id": customer.pk, "properties": {"tokens": 1.5}},
    ])
    assert result.validation_failed == []
    assert sorted(result.debug["ingested"]) == ["o1", "o2"]  # an extra field for the client
    amended = orb_client.events.update("o1", event_name="api_call", timestamp=now,
                                       properties={"tokens": 6}, customer_id=customer.pk)
    assert amended.amended == "o1"
    assert orb_client.events.deprecate("o2").deprecated == "o2"
    found = orb_client.events.search(event_ids=["o1", "o2"])
    by_id = {e.id: e for e in found.data}
    assert by_id["o1"].properties == {"tokens": 6}
    assert by_id["o2"].deprecated is True
    with pytest.raises(orb.BadRequestError):
        orb_client.events.ingest(events=[{"idempotency_key": "bad", "event_name": "a b",
                                          "timestamp": now, "customer_id": customer.pk,
                                          "properties": {}}])

    backfill = orb_client.events.backfills.create(
        timeframe_start=now - timedelta(days=3), timeframe_end=now - timedelta(days=2),
        customer_id=customer.pk)
    assert backfill.status == "pending"
    closed = orb_client.events.backfills.close(backfill.id)
    assert closed.status == "reflected"
    assert orb_client.events.backfills.fetch(backfill.id).id == backfill.id
    assert [b.id for b in orb_client.events.backfills.list()] == [backfill.id]
    assert orb_client.events.backfills.revert(backfill.id).status == "reverted"
