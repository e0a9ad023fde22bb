"""JSON in and out with exact decimals, and the serializer fields the contract needs."""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import parsers, renderers, serializers
from rest_framework.exceptions import ParseError

from billing_project.decimals import DecimalInputError, normalize, parse_decimal

_decoder = msgspec.json.Decoder(float_hook=Decimal)

# OpenAPI: every error is application/problem+json; views add 404/409/413 where they apply.
PROBLEM = OpenApiResponse(description="application/problem+json error")
ERRORS = {400: PROBLEM, 401: PROBLEM, 403: PROBLEM}


def _enc_hook(obj):
    if isinstance(obj, dict):
        return dict(obj)
    if isinstance(obj, (list, tuple)):
        return list(obj)
    return str(obj)  # lazy translation strings, UUIDs, ...


_encoder = msgspec.json.Encoder(decimal_format="number", enc_hook=_enc_hook)


def json_loads(data: bytes):
    """Decode JSON keeping every number exact (floats become Decimal; NaN is invalid JSON)."""
    return _decoder.decode(data)


def contains_nul(value) -> bool:
    """PostgreSQL text and jsonb cannot hold U+0000; such input is refused with a 400."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False


def json_dumps(data) -> bytes:
    """Encode JSON writing Decimal values as exact JSON numbers."""
    return _encoder.encode(data)


class DecimalJSONParser(parsers.BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        if not raw.strip():
            return {}
        try:
            data = json_loads(raw)
        except (msgspec.DecodeError, ValueError) as exc:
            raise ParseError(f"Malformed JSON: {exc}") from None
        if b"\\u0000" in raw and contains_nul(data):
            raise ParseError("Strings must not contain NUL (\\u0000) characters.")
        return data


class JSONRenderer(renderers.BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return json_dumps(data)


@extend_schema_field(OpenApiTypes.NUMBER)
class AmountField(serializers.Field):
    """Exact decimal input (JSON number or decimal string), exact JSON number output."""

    default_error_messages = {"positive": "Must be greater than 0.",
                              "non_negative": "Must not be negative."}

    def __init__(self, *, positive: bool = False, non_negative: bool = False, **kwargs):
        self.positive = positive
        self.non_negative = non_negative
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        try:
            value = parse_decimal(data)
        except DecimalInputError as exc:
            raise serializers.ValidationError(str(exc), code="invalid_decimal") from None
        if self.positive and value <= 0:
            self.fail("positive")
        if self.non_negative and value < 0:
            self.fail("non_negative")
        return value

    def to_representation(self, value):
        return None if value is None else normalize(Decimal(value))


@extend_schema_field(OpenApiTypes.STR)
class MoneyField(AmountField):
    """Money on invoices and prices: a decimal string ("12.50"), as in Orb."""

    def __init__(self, *, places: int | None = 2, **kwargs):
        self.places = places
        super().__init__(**kwargs)

    def to_representation(self, value):
        if value is None:
            return None
        value = Decimal(value)
        if self.places is not None:
            return str(value.quantize(Decimal(1).scaleb(-self.places)))
        return str(normalize(value))


def parse_timestamp(value) -> datetime:
    """RFC 3339 with an explicit offset -> aware UTC datetime; naive timestamps are refused."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
        if parsed is None:
            raise ValueError(f"'{value}' is not an RFC 3339 timestamp.")
    else:
        raise ValueError("A timestamp string is required.")
    if timezone.is_naive(parsed):
        raise ValueError("Timestamps need a UTC offset or 'Z'.")
    return parsed.astimezone(ZoneInfo("UTC"))


@extend_schema_field(OpenApiTypes.DATETIME)
class TimestampField(serializers.Field):
    def to_internal_value(self, data):
        try:
            return parse_timestamp(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc), code="invalid_timestamp") from None

    def to_representation(self, value):
        return format_timestamp(value)


def format_timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = value.astimezone(ZoneInfo("UTC")).isoformat()
    return text.replace("+00:00", "Z")


@extend_schema_field(OpenApiTypes.STR)
class DateOrTimestampField(TimestampField):
    """Orb date fields: `YYYY-MM-DD` is the start of that day in the customer's time zone.

    The serializer's context must carry `timezone` (an IANA name) for date inputs.
    """

    def to_internal_value(self, data):
        if isinstance(data, str) and len(data.strip()) == 10:
            day = parse_date(data.strip()) if data.strip()[4] == "-" else None
            if day is None:
                raise serializers.ValidationError(f"'{data}' is not a date.", code="invalid_date")
            tz = ZoneInfo(self.context.get("timezone") or "UTC")
            local = datetime(day.year, day.month, day.day, tzinfo=tz)
            return local.astimezone(ZoneInfo("UTC"))
        return super().to_internal_value(data)


def validate_timezone_name(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise serializers.ValidationError(f"'{value}' is not an IANA time zone.",
                                          code="invalid_timezone") from None
    return value


class StringMapField(serializers.DictField):
    """metadata: {str: str}."""

    child = serializers.CharField(allow_blank=True, max_length=2000)

    def __init__(self, **kwargs):
        kwargs.setdefault("child", serializers.CharField(allow_blank=True, max_length=2000))
        super().__init__(**kwargs)


def public_url(path: str) -> str:
    return f"{settings.BILLING_PUBLIC_URL}{path}"
