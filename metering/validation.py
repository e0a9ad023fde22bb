"""Per-event validation of API.md §2, fast enough for the ingest hot path (no serializers)."""

import re
from datetime import UTC, datetime
from decimal import Decimal

from billing_project.decimals import DecimalInputError, parse_decimal

MAX_IDEMPOTENCY_KEY = 256
MAX_EVENT_NAME = 255
MAX_CUSTOMER_ID = 255
MAX_EVENTS_PER_REQUEST = 1000
_WHITESPACE = re.compile(r"\s")
_MAX_INT = 10**18


def parse_event_timestamp(value) -> datetime:
    """RFC 3339 with an offset -> aware UTC datetime; ValueError with a message otherwise."""
    if not isinstance(value, str):
        raise ValueError("timestamp must be an RFC 3339 string.")
    text = value.strip()
    if len(text) < 19 or text[4] != "-" or text[7] != "-" or text[10] not in "Tt ":
        raise ValueError(f"timestamp '{value}' is not an RFC 3339 timestamp.")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp '{value}' is not an RFC 3339 timestamp.") from None
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp '{value}' has no UTC offset (add 'Z' or '+00:00').")
    return parsed.astimezone(UTC)


def event_name_errors(value) -> list[str]:
    if not isinstance(value, str) or not value:
        return ["event_name is required (a non-empty string)."]
    if len(value) > MAX_EVENT_NAME:
        return [f"event_name is longer than {MAX_EVENT_NAME} characters."]
    if _WHITESPACE.search(value):
        return ["event_name must not contain whitespace."]
    return []


def properties_errors(value) -> list[str]:
    """properties: a flat object of str -> str | number | bool | null."""
    if not isinstance(value, dict):
        return ["properties must be an object."]
    errors = []
    for key, item in value.items():
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int and -_MAX_INT < item < _MAX_INT:
            continue
        if isinstance(item, (int, Decimal)) and not isinstance(item, bool):
            try:
                parse_decimal(item)
            except DecimalInputError as exc:
                errors.append(f"properties.{key}: {exc}")
            continue
        if isinstance(item, (dict, list)):
            errors.append(f"properties.{key} must be a string, number or boolean "
                          "(nested objects and lists are not allowed).")
        else:
            errors.append(f"properties.{key} must be a string, number or boolean.")
    return errors


def customer_ref_errors(customer_id, external_customer_id) -> list[str]:
    has_id = customer_id is not None
    has_external = external_customer_id is not None
    if has_id == has_external:
        return ["Exactly one of customer_id and external_customer_id is required."]
    value = customer_id if has_id else external_customer_id
    name = "customer_id" if has_id else "external_customer_id"
    if not isinstance(value, str) or not value:
        return [f"{name} must be a non-empty string."]
    if len(value) > MAX_CUSTOMER_ID:
        return [f"{name} is longer than {MAX_CUSTOMER_ID} characters."]
    return []


def idempotency_key_errors(value) -> list[str]:
    if not isinstance(value, str) or not value:
        return ["idempotency_key is required (a non-empty string)."]
    if len(value) > MAX_IDEMPOTENCY_KEY:
        return [f"idempotency_key is longer than {MAX_IDEMPOTENCY_KEY} characters."]
    return []


def _flat_simple(properties: dict) -> bool:
    for item in properties.values():
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int and -_MAX_INT < item < _MAX_INT:
            continue
        return False  # decimals, nested values, ...: the full check decides
    return True


def fast_valid_event(raw: dict, key: str, *, oldest: datetime, newest: datetime):
    """(timestamp, properties) when the event passes every structural rule with simple values,
    else None (the caller then runs the full checks, which explain the failure)."""
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        return None
    name = raw.get("event_name")
    if type(name) is not str or not 0 < len(name) <= MAX_EVENT_NAME or _WHITESPACE.search(name):
        return None
    customer_id = raw.get("customer_id")
    external_id = raw.get("external_customer_id")
    ref = customer_id if external_id is None else (external_id if customer_id is None else None)
    if type(ref) is not str or not 0 < len(ref) <= MAX_CUSTOMER_ID:
        return None
    properties = raw.get("properties")
    if type(properties) is not dict or not _flat_simple(properties):
        return None
    text = raw.get("timestamp")
    if type(text) is not str or len(text) < 20 or text[4] != "-" or text[10] not in "Tt ":
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    parsed = parsed.astimezone(UTC)
    if not oldest <= parsed <= newest:
        return None
    return parsed, properties
