import itertools
from datetime import datetime

import factory

from metering import services
from metering.models import Meter

_keys = itertools.count()


class MeterFactory(factory.django.DjangoModelFactory):
    """Goes through meter_create, so rollups of earlier events are built as in production."""

    class Meta:
        model = Meter

    slug = factory.Sequence(lambda n: f"meter-{n}")
    name = factory.Sequence(lambda n: f"Meter {n}")
    event_name = "api_call"
    aggregation = "sum"
    value_property = "amount"
    group_by = factory.LazyFunction(dict)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        if kwargs.get("aggregation") == "count" and "value_property" not in kwargs:
            kwargs["value_property"] = None
        return services.meter_create(actor="test", **kwargs)


def event(customer=None, *, ts: datetime, name="api_call", key=None, external_id=None,
          **properties) -> dict:
    body = {"idempotency_key": key or f"evt-{next(_keys)}", "event_name": name,
            "timestamp": ts.isoformat(), "properties": properties}
    if external_id is not None:
        body["external_customer_id"] = external_id
    else:
        body["customer_id"] = customer.pk
    return body


def ingest(*events, now=None, backfill_id=None):
    """Ingest through the service; `now` lets tests place events outside the grace period."""
    return services.events_ingest(events=list(events), actor="test", now=now,
                                  backfill_id=backfill_id)
