"""Domain errors and the one place where every error becomes application/problem+json."""

import logging

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.views import set_rollback

logger = logging.getLogger("billing.errors")

PROBLEM_CONTENT_TYPE = "application/problem+json"


class DomainError(Exception):
    """An error a service raises on purpose. `code` is stable; tests assert on it."""

    status = status.HTTP_400_BAD_REQUEST
    code = "invalid_request"
    title = "Invalid request"

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None,
                 extra: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.field = field
        self.extra = extra or {}

    def validation_errors(self) -> list:
        if self.field:
            return [{"field": self.field, "message": self.detail, "code": self.code}]
        return []


class InvalidInput(DomainError):
    pass


class NotFound(DomainError):
    status = status.HTTP_404_NOT_FOUND
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    status = status.HTTP_409_CONFLICT
    code = "conflict"
    title = "Conflict"


def problem_body(*, status_code: int, title: str, detail: str, code: str,
                 validation_errors: list | None = None, **extra) -> dict:
    body = {
        "type": f"urn:billing:error:{code}",
        "title": title,
        "status": status_code,
        "detail": detail,
        "code": code,
        "validation_errors": validation_errors or [],
    }
    body.update(extra)
    return body


def problem_response(**kwargs) -> JsonResponse:
    body = problem_body(**kwargs)
    return JsonResponse(body, status=body["status"], content_type=PROBLEM_CONTENT_TYPE)


def flatten_validation_errors(detail, prefix: str = "") -> list[dict]:
    """DRF's nested error dict/list -> [{field, message, code}] with dotted field paths."""
    errors: list[dict] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = prefix if key == "non_field_errors" else (f"{prefix}.{key}" if prefix else key)
            errors.extend(flatten_validation_errors(value, name))
    elif isinstance(detail, list):
        if all(isinstance(item, (str, exceptions.ErrorDetail)) for item in detail):
            for item in detail:
                errors.append({"field": prefix or None, "message": str(item),
                               "code": getattr(item, "code", "invalid")})
        else:
            for index, item in enumerate(detail):
                if item:
                    errors.extend(flatten_validation_errors(item, f"{prefix}[{index}]"))
    else:
        errors.append({"field": prefix or None, "message": str(detail),
                       "code": getattr(detail, "code", "invalid")})
    return errors


_DRF_CODES = {
    exceptions.ParseError: ("malformed_request", "Malformed request"),
    exceptions.NotAuthenticated: ("not_authenticated", "Authentication required"),
    exceptions.AuthenticationFailed: ("authentication_failed", "Authentication failed"),
    exceptions.PermissionDenied: ("permission_denied", "Permission denied"),
    exceptions.NotFound: ("not_found", "Not found"),
    exceptions.MethodNotAllowed: ("method_not_allowed", "Method not allowed"),
    exceptions.NotAcceptable: ("not_acceptable", "Not acceptable"),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", "Unsupported media type"),
    exceptions.Throttled: ("rate_limited", "Too many requests"),
}


def problem_exception_handler(exc, context):
    """DRF EXCEPTION_HANDLER: every exception -> problem+json, transaction rolled back."""
    from rest_framework.response import Response

    set_rollback()
    headers = {}
    if isinstance(exc, DomainError):
        body = problem_body(status_code=exc.status, title=exc.title, detail=exc.detail,
                            code=exc.code, validation_errors=exc.validation_errors(), **exc.extra)
    elif isinstance(exc, DjangoValidationError):
        messages = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
        errors = [{"field": k or None, "message": m, "code": "invalid"}
                  for k, ms in messages.items() for m in ms]
        body = problem_body(status_code=400, title="Invalid request",
                            detail="; ".join(e["message"] for e in errors), code="invalid",
                            validation_errors=errors)
    elif isinstance(exc, exceptions.ValidationError):
        errors = flatten_validation_errors(exc.detail)
        detail = "; ".join(
            f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors
        )
        body = problem_body(status_code=400, title="Invalid request", detail=detail,
                            code="validation_failed", validation_errors=errors)
    elif isinstance(exc, (Http404, exceptions.NotFound)):
        body = problem_body(status_code=404, title="Not found",
                            detail=str(getattr(exc, "detail", "")) or "Not found.",
                            code="not_found")
    elif isinstance(exc, PermissionDenied):
        body = problem_body(status_code=403, title="Permission denied", detail=str(exc)
                            or "Permission denied.", code="permission_denied")
    elif isinstance(exc, exceptions.APIException):
        code, title = next(
            (v for k, v in _DRF_CODES.items() if isinstance(exc, k)), ("error", "Error")
        )
        body = problem_body(status_code=exc.status_code, title=title, detail=str(exc.detail),
                            code=code)
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
    else:
        view = context.get("view")
        logger.exception("Unhandled error in %s", type(view).__name__ if view else "request",
                         exc_info=exc)
        body = problem_body(status_code=500, title="Internal server error",
                            detail="An unexpected error occurred.", code="internal_error")
    return Response(body, status=body["status"], headers=headers,
                    content_type=PROBLEM_CONTENT_TYPE)


# Django-level handlers (unknown routes, errors outside DRF views).
def handler400(request, exception=None):
    return problem_response(status_code=400, title="Bad request", detail="Bad request.",
                            code="bad_request")


def handler403(request, exception=None):
    return problem_response(status_code=403, title="Permission denied",
                            detail="Permission denied.", code="permission_denied")


def handler404(request, exception=None):
    return problem_response(status_code=404, title="Not found",
                            detail=f"No route for {request.path}.", code="not_found")


def handler500(request):
    return problem_response(status_code=500, title="Internal server error",
                            detail="An unexpected error occurred.", code="internal_error")
