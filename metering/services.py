"""Metering writes (API.md §2, §3): ingestion, amend, deprecate, backfills, meters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing_project.api import format_timestamp, json_dumps
from billing_project.errors import Conflict, InvalidInput, NotFound
from ledgers.audit import record_action
from ledgers.models import Customer
from metering import rollups
from metering.locks import ensure_usage_unlocked
from metering.models import Backfill, Event, EventVersion, Meter
from metering.signals import usage_changed
from metering.validation import (
    MAX_EVENTS_PER_REQUEST,
    customer_ref_errors,
    event_name_errors,
    fast_valid_event,
    idempotency_key_errors,
    parse_event_timestamp,
    properties_errors,
)

FUTURE_LIMIT = timedelta(hours=1)


def grace_period() -> timedelta:
    return getattr(settings, "BILLING_INGEST_GRACE_PERIOD", timedelta(days=1))


def _hour_floor(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _hour_ceil(value: datetime) -> datetime:
    floor = _hour_floor(value)
    return floor if floor == value else floor + timedelta(hours=1)


# --- ingestion -------------------------------------------------------------------------------

@dataclass
class IngestResult:
    validation_failed: list[dict] = field(default_factory=list)
    ingested: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)


# The primary key dedupes (ON CONFLICT DO NOTHING); rows go in key order (a fixed lock order for
# concurrent retries of overlapping batches). Rollups are folded in later (see rollups.py).
INSERT_EVENTS_SQL = """
INSERT INTO metering_event (event_id, customer_id, external_customer_id, event_name, timestamp,
                            properties, deprecated, counted, backfill_id, version, created_at,
                            ins_seq)
SELECT t.event_id, t.customer_id, t.external_customer_id, t.event_name, t.timestamp,
       t.properties::jsonb, false, %(counted)s, %(backfill)s, 1, %(now)s, %(seq)s
FROM json_to_recordset(%(rows)s::json) AS t(event_id text, customer_id text,
                                             external_customer_id text, event_name text,
                                             timestamp timestamptz, properties json)
ORDER BY t.event_id
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""


def _backfill_for_ingest(backfill_id: str) -> Backfill:
    with connection.cursor() as cursor:  # FOR SHARE: close/revert wait for this batch
        cursor.execute("SELECT id FROM metering_backfill WHERE id = %s FOR SHARE", [backfill_id])
    backfill = Backfill.objects.filter(pk=backfill_id).first()
    if backfill is None:
        raise NotFound(f"No backfill '{backfill_id}'.", code="backfill_not_found")
    if backfill.status != Backfill.Status.PENDING:
        raise Conflict(f"Backfill '{backfill_id}' is {backfill.status}; only pending backfills "
                       "accept events.", code="backfill_not_open")
    return backfill


def _resolve_customers(cursor, ids, externals, by_id, by_external) -> None:
    cursor.execute("SELECT id, external_customer_id FROM ledgers_customer "
                   "WHERE id = ANY(%s) OR external_customer_id = ANY(%s)",
                   [list(ids), list(externals)])
    for pk, external in cursor.fetchall():
        by_id[pk] = external
        if external is not None:
            by_external[external] = pk


def events_ingest(*, events, backfill_id: str | None = None, actor=None,
                  now: datetime | None = None) -> IngestResult:
    """Validate and ingest a batch. Valid events are ingested even when others fail.

    Each idempotency key is ingested at most once, forever (primary key). A batch with the same
    key twice and different bodies is rejected as a whole (InvalidInput).
    """
    if not isinstance(events, list):
        raise InvalidInput("events must be a list.", code="invalid_events", field="events")
    if len(events) > MAX_EVENTS_PER_REQUEST:
        raise InvalidInput(f"At most {MAX_EVENTS_PER_REQUEST} events per request "
                           f"({len(events)} sent).", code="too_many_events", field="events")
    # No savepoint: inside a request the whole request is the transaction, and a failure here
    # fails (and rolls back) the request anyway.
    with transaction.atomic(savepoint=False):
        return _ingest(events=events, backfill_id=backfill_id, actor=actor,
                       now=now or timezone.now())


def _ingest(*, events, backfill_id, actor, now) -> IngestResult:
    result = IngestResult()
    backfill = _backfill_for_ingest(backfill_id) if backfill_id else None
    oldest = now - grace_period()
    newest = now + FUTURE_LIMIT

    # 1. Structure of each event (no database).
    fast = backfill is None
    candidates = []  # (key, event dict, timestamp, properties)
    seen: dict[str, dict] = {}
    conflicting: list[str] = []
    for index, raw in enumerate(events):
        if not isinstance(raw, dict):
            result.validation_failed.append({
                "idempotency_key": None,
                "validation_errors": [f"events[{index}] must be an object."]})
            continue
        key = raw.get("idempotency_key")
        if fast and type(key) is str and key not in seen:
            clean = fast_valid_event(raw, key, oldest=oldest, newest=newest)
            if clean is not None:  # the common case; anything else gets the full checks
                seen[key] = raw
                candidates.append((key, raw, *clean))
                continue
        errors = idempotency_key_errors(key)
        if not errors:
            previous = seen.get(key)
            if previous is not None:
                if previous != raw and key not in conflicting:
                    conflicting.append(key)
                continue
            seen[key] = raw
        errors += event_name_errors(raw.get("event_name"))
        customer_id = raw.get("customer_id")
        external_id = raw.get("external_customer_id")
        errors += customer_ref_errors(customer_id, external_id)
        timestamp = None
        try:
            timestamp = parse_event_timestamp(raw.get("timestamp"))
        except ValueError as exc:
            errors.append(str(exc))
        if timestamp is not None:
            if timestamp > newest:
                errors.append("timestamp is more than 1 hour in the future.")
            elif backfill is not None:
                if not backfill.timeframe_start <= timestamp < backfill.timeframe_end:
                    errors.append("timestamp is outside the backfill's timeframe "
                                  f"[{format_timestamp(backfill.timeframe_start)}, "
                                  f"{format_timestamp(backfill.timeframe_end)}).")
            elif timestamp < oldest:
                errors.append("timestamp is older than the ingestion grace period "
                              f"({format_timestamp(oldest)}); use a backfill.")
        properties = raw.get("properties")
        if properties is None:
            properties = {}
        errors += properties_errors(properties)
        if errors:
            result.validation_failed.append({
                "idempotency_key": key if isinstance(key, str) else None,
                "validation_errors": errors})
            continue
        candidates.append((key, raw, timestamp, properties))
    if conflicting:
        raise InvalidInput(
            "The batch contains the same idempotency_key with different bodies; nothing was "
            "ingested.", code="conflicting_idempotency_keys",
            extra={"validation_failed": [
                {"idempotency_key": key,
                 "validation_errors": ["Duplicate idempotency_key with a different body."]}
                for key in conflicting]})

    # 2. Customers: a customer_id must exist; an unknown external id waits for its customer.
    ids = {raw["customer_id"] for _, raw, _, _ in candidates if raw.get("customer_id")}
    externals = {raw["external_customer_id"] for _, raw, _, _ in candidates
                 if raw.get("external_customer_id")}
    by_id, by_external = {}, {}
    if ids or externals:
        with connection.cursor() as cursor:
            _resolve_customers(cursor, ids, externals, by_id, by_external)
            unknown = externals - set(by_external)
            if unknown:
                # Lock, then look again: a customer created meanwhile is seen now, one created
                # later waits for this batch and then attributes its events.
                rollups.lock_external_ids_shared(cursor, list(unknown))
                _resolve_customers(cursor, set(), unknown, by_id, by_external)
    rows, accepted = [], []
    for key, raw, timestamp, properties in candidates:
        customer_id = raw.get("customer_id")
        if customer_id is not None:
            if customer_id not in by_id:
                result.validation_failed.append({
                    "idempotency_key": key,
                    "validation_errors": [f"customer_id '{customer_id}' does not exist."]})
                continue
            external_id = by_id[customer_id]
        else:
            external_id = raw["external_customer_id"]
            customer_id = by_external.get(external_id)
        if backfill is not None and backfill.customer_id is not None \
                and customer_id != backfill.customer_id:
            result.validation_failed.append({
                "idempotency_key": key,
                "validation_errors": ["The event's customer is not the backfill's customer."]})
            continue
        accepted.append(key)
        rows.append({"event_id": key, "customer_id": customer_id,
                     "external_customer_id": external_id, "event_name": raw["event_name"],
                     "timestamp": timestamp, "properties": properties})

    # 3. One statement: the primary key dedupes; rollups are folded in after commit.
    inserted: set[str] = set()
    if rows:
        params = {"rows": json_dumps(rows).decode(), "counted": backfill is None,
                  "backfill": backfill.pk if backfill else None, "now": now}
        with connection.cursor() as cursor:
            params["seq"] = rollups.ingest_batch_number(cursor)
            cursor.execute(INSERT_EVENTS_SQL, params)
            inserted = {row[0] for row in cursor.fetchall()}
        if inserted and backfill is None:
            transaction.on_commit(rollups.compact_soon)
    duplicates = [key for key in accepted if key not in inserted]
    deprecated = set()
    if duplicates:
        deprecated = set(Event.objects.filter(event_id__in=duplicates, deprecated=True)
                         .values_list("event_id", flat=True))
    for key in accepted:
        if key in inserted:
            result.ingested.append(key)
        elif key in deprecated:
            result.validation_failed.append({
                "idempotency_key": key,
                "validation_errors": [f"Event '{key}' was deprecated and cannot be ingested "
                                      "again."]})
        else:
            result.duplicate.append(key)
    if result.ingested:
        record_action(actor=actor, action="events.ingest",
                      target=("metering.backfill", backfill.pk) if backfill
                      else ("metering.event", result.ingested[0]),
                      data={"ingested": len(result.ingested),
                            "duplicate": len(result.duplicate),
                            "failed": len(result.validation_failed)})
    return result


# --- customers created after their events ----------------------------------------------------

@transaction.atomic
def events_attribute_to_customer(*, customer: Customer) -> int:
    """Give events sent with this customer's external id (before it existed) to the customer."""
    if not customer.external_customer_id:
        return 0
    # Writer lock first: an ingest waiting for this external id may hold up a compaction's
    # barrier, so taking the writer lock after the id lock could deadlock with it.
    rollups.lock_writer()
    rollups.lock_external_id_exclusive(customer.external_customer_id)
    updated = Event.objects.filter(customer__isnull=True,
                                   external_customer_id=customer.external_customer_id) \
        .update(customer=customer)
    if updated:
        rollups.rebuild(customer_ids=[customer.pk])
    return updated


# --- amend / deprecate -----------------------------------------------------------------------

def _event_snapshot(event: Event) -> dict:
    return {"event_name": event.event_name, "properties": json_safe(event.properties),
            "timestamp": format_timestamp(event.timestamp), "customer_id": event.customer_id,
            "external_customer_id": event.external_customer_id,
            "deprecated": event.deprecated, "version": event.version}


def json_safe(value):
    """Properties for the audit log's JSON column (exact numbers as strings there)."""
    from decimal import Decimal

    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return str(value)
    return value


def _lock_event(event_id: str) -> Event:
    event = Event.objects.select_for_update().filter(pk=event_id).first()
    if event is None:
        raise NotFound(f"No event '{event_id}'.", code="event_not_found")
    return event


def _keep_original(event: Event) -> None:
    """Before the first change, copy the ingested version into the history."""
    if event.version == 1 and not EventVersion.objects.filter(event=event).exists():
        EventVersion.objects.create(
            event=event, version=1, action=EventVersion.Action.INGEST,
            event_name=event.event_name, timestamp=event.timestamp,
            properties=event.properties, customer_id=event.customer_id,
            external_customer_id=event.external_customer_id, deprecated=False,
            created_at=event.created_at)


def _write_version(event: Event, *, action: str, actor, reason: str, now) -> None:
    from ledgers.audit import actor_label

    EventVersion.objects.create(
        event=event, version=event.version, action=action, event_name=event.event_name,
        timestamp=event.timestamp, properties=event.properties, customer_id=event.customer_id,
        external_customer_id=event.external_customer_id, deprecated=event.deprecated,
        actor=actor_label(actor), reason=reason or "", created_at=now)


def _rebuild_event_hour(event: Event) -> None:
    start = _hour_floor(event.timestamp)
    rollups.rebuild(customer_ids=[event.customer_id], start=start,
                    end=start + timedelta(hours=1))
    usage_changed.send(sender=Event, customer_id=event.customer_id, start=event.timestamp,
                       end=start + timedelta(hours=1))


def _resolve_customer_strict(customer_id, external_customer_id) -> Customer:
    errors = customer_ref_errors(customer_id, external_customer_id)
    if errors:
        raise InvalidInput(errors[0], code="invalid_customer", field="customer_id")
    if customer_id is not None:
        customer = Customer.objects.filter(pk=customer_id).first()
    else:
        customer = Customer.objects.filter(external_customer_id=external_customer_id).first()
    if customer is None:
        which = customer_id if customer_id is not None else external_customer_id
        raise InvalidInput(f"No customer '{which}'.", code="customer_not_found",
                           field="customer_id" if customer_id is not None
                           else "external_customer_id")
    return customer


@transaction.atomic
def event_amend(*, event_id: str, event_name, properties, timestamp, customer_id=None,
                external_customer_id=None, actor, reason: str = "") -> Event:
    """Replace an event's name and properties; timestamp and customer must stay the same."""
    errors = event_name_errors(event_name)
    if errors:
        raise InvalidInput(errors[0], code="invalid_event_name", field="event_name")
    if properties is None:
        properties = {}
    errors = properties_errors(properties)
    if errors:
        raise InvalidInput("; ".join(errors), code="invalid_properties", field="properties")
    if not isinstance(timestamp, datetime):
        try:
            timestamp = parse_event_timestamp(timestamp)
        except ValueError as exc:
            raise InvalidInput(str(exc), code="invalid_timestamp", field="timestamp") from None
    customer = _resolve_customer_strict(customer_id, external_customer_id)
    event = _lock_event(event_id)
    if event.deprecated:
        raise Conflict(f"Event '{event_id}' is deprecated.", code="event_deprecated")
    if event.customer_id is None:
        raise InvalidInput(f"Event '{event_id}' belongs to no existing customer yet.",
                           code="event_customer_unknown")
    if customer.pk != event.customer_id:
        raise InvalidInput("The customer must be the original event's customer.",
                           code="customer_mismatch", field="customer_id")
    if timestamp != event.timestamp:
        raise InvalidInput("The timestamp must equal the original event's timestamp "
                           f"({format_timestamp(event.timestamp)}).",
                           code="timestamp_mismatch", field="timestamp")
    ensure_usage_unlocked(customer_id=event.customer_id, start=event.timestamp,
                          end=event.timestamp + timedelta(microseconds=1))
    now = timezone.now()
    before = _event_snapshot(event)
    _keep_original(event)
    event.event_name = event_name
    event.properties = properties
    event.version += 1
    event.amended_at = now
    event.save(update_fields=["event_name", "properties", "version", "amended_at"])
    _write_version(event, action=EventVersion.Action.AMEND, actor=actor, reason=reason, now=now)
    if event.counted:
        _rebuild_event_hour(event)
    record_action(actor=actor, action="event.amend", target=event, reason=reason,
                  data={"before": before, "after": _event_snapshot(event)})
    return event


@transaction.atomic
def event_deprecate(*, event_id: str, actor, reason: str = "") -> Event:
    """Stop counting an event (kept for audit). Deprecating twice changes nothing."""
    event = _lock_event(event_id)
    if event.deprecated:
        return event
    if event.customer_id is None:
        raise InvalidInput(f"Event '{event_id}' belongs to no existing customer yet.",
                           code="event_customer_unknown")
    ensure_usage_unlocked(customer_id=event.customer_id, start=event.timestamp,
                          end=event.timestamp + timedelta(microseconds=1))
    now = timezone.now()
    before = _event_snapshot(event)
    was_counted = event.counted
    _keep_original(event)
    event.deprecated = True
    event.counted = False
    event.version += 1
    event.amended_at = now
    event.save(update_fields=["deprecated", "counted", "version", "amended_at"])
    _write_version(event, action=EventVersion.Action.DEPRECATE, actor=actor, reason=reason,
                   now=now)
    if was_counted:
        _rebuild_event_hour(event)
    record_action(actor=actor, action="event.deprecate", target=event, reason=reason,
                  data={"before": before, "after": _event_snapshot(event)})
    return event


# --- backfills -------------------------------------------------------------------------------

def _backfill_snapshot(backfill: Backfill) -> dict:
    return {"status": backfill.status, "customer_id": backfill.customer_id,
            "timeframe_start": format_timestamp(backfill.timeframe_start),
            "timeframe_end": format_timestamp(backfill.timeframe_end),
            "replace_existing_events": backfill.replace_existing_events}


@transaction.atomic
def backfill_create(*, timeframe_start: datetime, timeframe_end: datetime,
                    customer: Customer | None = None, replace_existing_events: bool = False,
                    actor) -> Backfill:
    if timeframe_start >= timeframe_end:
        raise InvalidInput("timeframe_start must be before timeframe_end.",
                           code="invalid_timeframe", field="timeframe_end")
    if timeframe_start > timezone.now() + FUTURE_LIMIT:
        raise InvalidInput("A backfill cannot start in the future.", code="invalid_timeframe",
                           field="timeframe_start")
    backfill = Backfill.objects.create(
        customer=customer, timeframe_start=timeframe_start, timeframe_end=timeframe_end,
        replace_existing_events=replace_existing_events)
    record_action(actor=actor, action="backfill.create", target=backfill,
                  data={"after": _backfill_snapshot(backfill)})
    return backfill


def _lock_backfill(backfill_id: str) -> Backfill:
    backfill = Backfill.objects.select_for_update().filter(pk=backfill_id).first()
    if backfill is None:
        raise NotFound(f"No backfill '{backfill_id}'.", code="backfill_not_found")
    return backfill


def _rebuild_backfill_range(backfill: Backfill) -> None:
    rollups.rebuild(
        customer_ids=[backfill.customer_id] if backfill.customer_id else None,
        start=_hour_floor(backfill.timeframe_start), end=_hour_ceil(backfill.timeframe_end))
    usage_changed.send(sender=Backfill, customer_id=backfill.customer_id,
                       start=backfill.timeframe_start, end=backfill.timeframe_end)


def _in_timeframe(queryset, backfill: Backfill):
    queryset = queryset.filter(timestamp__gte=backfill.timeframe_start,
                               timestamp__lt=backfill.timeframe_end)
    if backfill.customer_id:
        queryset = queryset.filter(customer_id=backfill.customer_id)
    return queryset


@transaction.atomic
def backfill_close(*, backfill_id: str, actor) -> Backfill:
    """pending -> reflected: its events count; with replace_existing_events they replace the
    other events of the customer (or of every customer) in the timeframe."""
    backfill = _lock_backfill(backfill_id)
    if backfill.status != Backfill.Status.PENDING:
        raise Conflict(f"Backfill '{backfill_id}' is {backfill.status}, not pending.",
                       code="backfill_not_open")
    ensure_usage_unlocked(customer_id=backfill.customer_id, start=backfill.timeframe_start,
                          end=backfill.timeframe_end)
    before = _backfill_snapshot(backfill)
    if backfill.replace_existing_events:
        _in_timeframe(Event.objects.filter(counted=True), backfill) \
            .exclude(backfill=backfill).update(counted=False, replaced_by=backfill)
    Event.objects.filter(backfill=backfill, deprecated=False).update(counted=True)
    backfill.status = Backfill.Status.REFLECTED
    backfill.close_time = timezone.now()
    backfill.save(update_fields=["status", "close_time"])
    _rebuild_backfill_range(backfill)
    record_action(actor=actor, action="backfill.close", target=backfill,
                  data={"before": before, "after": _backfill_snapshot(backfill)})
    return backfill


@transaction.atomic
def backfill_revert(*, backfill_id: str, actor) -> Backfill:
    """Undo a backfill: its events stop counting, events it replaced count again."""
    backfill = _lock_backfill(backfill_id)
    if backfill.status not in (Backfill.Status.PENDING, Backfill.Status.REFLECTED):
        raise Conflict(f"Backfill '{backfill_id}' is {backfill.status}; it cannot be reverted.",
                       code="backfill_not_revertible")
    ensure_usage_unlocked(customer_id=backfill.customer_id, start=backfill.timeframe_start,
                          end=backfill.timeframe_end)
    before = _backfill_snapshot(backfill)
    was_reflected = backfill.status == Backfill.Status.REFLECTED
    Event.objects.filter(backfill=backfill).update(counted=False)
    Event.objects.filter(replaced_by=backfill, deprecated=False) \
        .update(counted=True, replaced_by=None)
    backfill.status = Backfill.Status.REVERTED
    backfill.reverted_at = timezone.now()
    backfill.save(update_fields=["status", "reverted_at"])
    if was_reflected:
        _rebuild_backfill_range(backfill)
    record_action(actor=actor, action="backfill.revert", target=backfill,
                  data={"before": before, "after": _backfill_snapshot(backfill)})
    return backfill


# --- meters ----------------------------------------------------------------------------------

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
GROUP_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
MAX_GROUP_BY = 10


def _meter_snapshot(meter: Meter) -> dict:
    return {"slug": meter.slug, "name": meter.name, "description": meter.description,
            "event_name": meter.event_name, "aggregation": meter.aggregation,
            "value_property": meter.value_property, "group_by": meter.group_by,
            "archived_at": format_timestamp(meter.archived_at)}


def validate_meter_fields(*, slug, event_name, aggregation, value_property, group_by):
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise InvalidInput("slug must be 1-100 letters, digits, '_' or '-'.",
                           code="invalid_slug", field="slug")
    errors = event_name_errors(event_name)
    if errors:
        raise InvalidInput(errors[0], code="invalid_event_name", field="event_name")
    if aggregation not in Meter.Aggregation.values:
        raise InvalidInput(f"aggregation must be one of {', '.join(Meter.Aggregation.values)}.",
                           code="invalid_aggregation", field="aggregation")
    if aggregation != Meter.Aggregation.COUNT and not value_property:
        raise InvalidInput(f"value_property is required for {aggregation}.",
                           code="value_property_required", field="value_property")
    if not isinstance(group_by, dict) or len(group_by) > MAX_GROUP_BY:
        raise InvalidInput(f"group_by must be an object of at most {MAX_GROUP_BY} entries.",
                           code="invalid_group_by", field="group_by")
    for name, prop in group_by.items():
        if not GROUP_NAME_RE.match(name) or not isinstance(prop, str) or not prop:
            raise InvalidInput(f"group_by entry '{name}' must map a name (letters, digits, "
                               "'_') to a property name.", code="invalid_group_by",
                               field="group_by")


@transaction.atomic
def meter_create(*, slug: str, name: str, event_name: str, aggregation: str,
                 value_property: str | None = None, group_by: dict | None = None,
                 description: str = "", actor) -> Meter:
    """Create a meter and roll up the events that already exist for it."""
    group_by = dict(group_by or {})
    if aggregation == Meter.Aggregation.COUNT:
        value_property = value_property or None
    validate_meter_fields(slug=slug, event_name=event_name, aggregation=aggregation,
                           value_property=value_property, group_by=group_by)
    meter = Meter(slug=slug, name=name, description=description or "", event_name=event_name,
                  aggregation=aggregation, value_property=value_property, group_by=group_by)
    try:
        with transaction.atomic():
            meter.save(force_insert=True)
    except IntegrityError as exc:
        if "meter_slug_unique_active" in str(exc):
            raise Conflict(f"A meter with slug '{slug}' already exists.",
                           code="duplicate_meter_slug", field="slug") from None
        raise
    rollups.rebuild(meter_ids=[meter.pk])
    record_action(actor=actor, action="meter.create", target=meter,
                  data={"after": _meter_snapshot(meter)})
    return meter


MUTABLE_METER_FIELDS = ("name", "description", "group_by")


@transaction.atomic
def meter_update(*, meter: Meter, actor, reason: str = "", **changes) -> Meter:
    """name, description and group_by may change; aggregation, event_name and value_property
    are fixed at creation (API.md §3). A group_by change rebuilds the meter's rollups."""
    fixed = set(changes) - set(MUTABLE_METER_FIELDS)
    if fixed:
        raise InvalidInput(f"Cannot change {', '.join(sorted(fixed))} of a meter.",
                           code="meter_field_immutable", field=sorted(fixed)[0])
    meter = Meter.objects.select_for_update().get(pk=meter.pk)
    before = _meter_snapshot(meter)
    if "group_by" in changes:
        changes["group_by"] = dict(changes["group_by"] or {})
        validate_meter_fields(slug=meter.slug, event_name=meter.event_name,
                               aggregation=meter.aggregation,
                               value_property=meter.value_property,
                               group_by=changes["group_by"])
    regroup = "group_by" in changes and changes["group_by"] != meter.group_by
    for name, value in changes.items():
        setattr(meter, name, value)
    meter.save(update_fields=list(changes) or None)
    if regroup:
        rollups.rebuild(meter_ids=[meter.pk])
    record_action(actor=actor, action="meter.update", target=meter, reason=reason,
                  data={"before": before, "after": _meter_snapshot(meter)})
    return meter


@transaction.atomic
def meter_archive(*, meter: Meter, actor, reason: str = "") -> Meter:
    meter = Meter.objects.select_for_update().get(pk=meter.pk)
    if meter.archived_at is None:
        before = _meter_snapshot(meter)
        meter.archived_at = timezone.now()
        meter.save(update_fields=["archived_at"])
        record_action(actor=actor, action="meter.archive", target=meter, reason=reason,
                      data={"before": before, "after": _meter_snapshot(meter)})
    return meter
