"""Demo meters and a few thousand events over the current month (idempotent: fixed keys)."""

import random
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from metering import services
from metering.models import Meter

DEMO_METERS = [
    {"slug": "tokens", "name": "LLM tokens", "event_name": "llm_completion",
     "aggregation": "sum", "value_property": "tokens", "group_by": {"model": "model"}},
    {"slug": "api_calls", "name": "API calls", "event_name": "api_call",
     "aggregation": "count"},
    {"slug": "unique_users", "name": "Active users", "event_name": "api_call",
     "aggregation": "unique_count", "value_property": "user_id"},
]
DEMO_CUSTOMERS = ("acme", "globex", "initech", "umbrella")
EVENTS_PER_CUSTOMER = 800
BATCH = 500


def _events(now: datetime) -> list[dict]:
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    span = max((now - month_start).total_seconds() - 60, 60)
    rng = random.Random(f"demo-{month_start:%Y-%m}")
    events = []
    for external_id in DEMO_CUSTOMERS:
        for index in range(EVENTS_PER_CUSTOMER):
            ts = month_start + timedelta(seconds=rng.uniform(0, span))
            if index % 2:
                body = {"event_name": "llm_completion",
                        "properties": {"tokens": rng.randint(50, 4000),
                                       "model": rng.choice(["small", "large"])}}
            else:
                body = {"event_name": "api_call",
                        "properties": {"user_id": f"{external_id}-user-{rng.randint(1, 25)}",
                                       "endpoint": rng.choice(["/search", "/chat"])}}
            events.append({**body, "timestamp": ts.isoformat(),
                           "idempotency_key": f"demo-{external_id}-{month_start:%Y%m}-{index}",
                           "external_customer_id": external_id})
    return sorted(events, key=lambda e: e["timestamp"])


def load(*, stdout) -> None:
    made = 0
    for values in DEMO_METERS:
        if not Meter.objects.filter(slug=values["slug"], archived_at__isnull=True).exists():
            services.meter_create(actor="system:demo", **values)
            made += 1
    if made:
        stdout.write(f"Demo meters created: {made}")
    now = timezone.now().astimezone(UTC)
    ingested = 0
    events = _events(now)
    by_day: dict[str, list[dict]] = {}
    for body in events:
        by_day.setdefault(body["timestamp"][:10], []).append(body)
    for day_events in by_day.values():
        for start in range(0, len(day_events), BATCH):
            batch = day_events[start:start + BATCH]
            # Older than the grace period: ingest "as of" the day's newest event.
            as_of = datetime.fromisoformat(day_events[-1]["timestamp"])
            result = services.events_ingest(events=batch, actor="system:demo", now=as_of)
            ingested += len(result.ingested)
    if ingested:
        stdout.write(f"Demo events ingested: {ingested}")
