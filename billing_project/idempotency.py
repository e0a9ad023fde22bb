"""`Idempotency-Key` for every POST/PUT under /v1 (API.md §0), stored in PostgreSQL.

The record is inserted in the same transaction as the request's work. A concurrent duplicate
blocks on the unique index until the first commits, then replays its stored response; if the first
rolled back, the duplicate does the work itself. Same key with a different body: 409.
"""

import hashlib

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.utils import timezone

from billing_project.errors import problem_response

HEADER = "HTTP_IDEMPOTENCY_KEY"
MAX_KEY_LENGTH = 255


def _fingerprint(request) -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b"\0")
    digest.update(request.get_full_path().encode())
    digest.update(b"\0")
    digest.update(request.body)
    return digest.hexdigest()


def _scope(request) -> str:
    """Keys are scoped to the caller's credentials, never shared between API keys."""
    auth = request.META.get("HTTP_AUTHORIZATION", "")
    return hashlib.sha256(auth.encode()).hexdigest()


def _replay(record) -> HttpResponse:
    response = HttpResponse(bytes(record.response_body), status=record.response_status,
                            content_type=record.response_content_type)
    response["Idempotent-Replayed"] = "true"
    return response


class IdempotencyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        key = request.META.get(HEADER)
        if key is None or request.method not in ("POST", "PUT") \
                or not request.path.startswith("/v1/"):
            return self.get_response(request)
        if not key or len(key) > MAX_KEY_LENGTH:
            return problem_response(status_code=400, title="Invalid Idempotency-Key",
                                    detail=f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} chars.",
                                    code="invalid_idempotency_key")
        from ledgers.models import IdempotencyRecord

        fingerprint = _fingerprint(request)
        scope = _scope(request)
        now = timezone.now()
        with transaction.atomic():
            try:
                with transaction.atomic():
                    record = IdempotencyRecord.objects.create(
                        scope=scope, key=key, fingerprint=fingerprint, created_at=now)
            except IntegrityError:
                record = IdempotencyRecord.objects.select_for_update().get(scope=scope, key=key)
                if record.created_at >= now - settings.BILLING_IDEMPOTENCY_TTL:
                    if record.fingerprint != fingerprint:
                        return problem_response(
                            status_code=409, title="Idempotency key reused",
                            detail="This Idempotency-Key was used with a different request.",
                            code="idempotency_key_reused")
                    return _replay(record)
                record.fingerprint = fingerprint  # expired: the key starts afresh
                record.created_at = now
            response = self.get_response(request)
            if response.status_code >= 500 or response.status_code in (401, 403, 429) \
                    or getattr(response, "streaming", False):
                transaction.set_rollback(True)  # not stored: the client may retry
                return response
            record.response_status = response.status_code
            record.response_body = response.content
            record.response_content_type = response.get("Content-Type", "application/json")
            record.save()
        return response
