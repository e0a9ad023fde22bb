"""The official `orb-billing` client works against the live server for customers."""

import orb
import pytest

from ledgers.models import Customer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def orb_client(live_server, api_key):
    return orb.Orb(base_url=live_server.url + "/v1", api_key=api_key.raw, max_retries=0)


def test_customers_with_official_client(orb_client):
    created = orb_client.customers.create(name="Acme", email="billing@acme.example",
                                          external_customer_id="acme-orb",
                                          metadata={"tier": "gold"}, timezone="Europe/Paris")
    assert created.id.startswith("cus_")
    assert created.external_customer_id == "acme-orb"
    fetched = orb_client.customers.fetch(created.id)
    assert fetched.name == "Acme"
    assert fetched.metadata == {"tier": "gold"}
    by_external = orb_client.customers.fetch_by_external_id("acme-orb")
    assert by_external.id == created.id
    for index in range(4):
        orb_client.customers.create(name=f"C{index}", email=f"c{index}@example.com")
    page = orb_client.customers.list(limit=2)
    assert len(page.data) == 2
    every = [customer.id for customer in orb_client.customers.list(limit=2)]
    assert len(every) == 5 == len(set(every))
    assert created.id in every
    updated = orb_client.customers.update(created.id, name="Acme Renamed")
    assert updated.name == "Acme Renamed"


def test_client_errors_map_to_orb_exceptions(orb_client):
    orb_client.customers.create(name="A", email="a@example.com", external_customer_id="dup")
    with pytest.raises(orb.ConflictError):
        orb_client.customers.create(name="B", email="b@example.com", external_customer_id="dup")
    with pytest.raises(orb.NotFoundError):
        orb_client.customers.fetch("cus_missing")
    with pytest.raises(orb.BadRequestError):
        orb_client.customers.create(name="C", email="not-an-email")
    assert Customer.objects.count() == 1
