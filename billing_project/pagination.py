"""Orb-shaped cursor pagination on (-created_at, -id): stable under concurrent inserts."""

import base64
import binascii
import json

from django.db.models import Q
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

from billing_project.api import format_timestamp, parse_timestamp

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def encode_cursor(created_at, pk) -> str:
    raw = json.dumps([format_timestamp(created_at), str(pk)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str):
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, pk = json.loads(raw)
        return parse_timestamp(created), str(pk)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationError({"cursor": ["Invalid cursor."]}) from None


def parse_limit(request) -> int:
    raw = request.query_params.get("limit")
    if raw in (None, ""):
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ValidationError({"limit": ["Must be an integer."]}) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError({"limit": [f"Must be between 1 and {MAX_LIMIT}."]})
    return limit


class OrbCursorPagination(BasePagination):
    """`?limit=&cursor=` -> {"data": [...], "pagination_metadata": {has_more, next_cursor}}.

    The queryset is ordered here by (-created_at, -pk); models index (created_at, id).
    """

    def paginate_queryset(self, queryset, request, view=None):
        limit = parse_limit(request)
        cursor = request.query_params.get("cursor")
        queryset = queryset.order_by("-created_at", "-pk")
        if cursor:
            created_at, pk = decode_cursor(cursor)
            queryset = queryset.filter(
                Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk)
            )
        rows = list(queryset[: limit + 1])
        self.has_more = len(rows) > limit
        rows = rows[:limit]
        self.next_cursor = (
            encode_cursor(rows[-1].created_at, rows[-1].pk) if self.has_more and rows else None
        )
        return rows

    def get_paginated_response(self, data):
        return Response({
            "data": data,
            "pagination_metadata": {"has_more": self.has_more, "next_cursor": self.next_cursor},
        })

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["data", "pagination_metadata"],
            "properties": {
                "data": schema,
                "pagination_metadata": {
                    "type": "object",
                    "properties": {
                        "has_more": {"type": "boolean"},
                        "next_cursor": {"type": "string", "nullable": True},
                    },
                },
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 20}},
            {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
        ]
