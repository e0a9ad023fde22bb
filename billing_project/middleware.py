from django.conf import settings

from billing_project.errors import problem_response


class BodySizeLimitMiddleware:
    """413 problem+json for API bodies over BILLING_MAX_BODY_BYTES, before anything reads them;
    400 for NUL characters in the URL (PostgreSQL text cannot hold them)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
            return problem_response(status_code=400, title="Bad request",
                                    detail="URLs must not contain NUL characters.",
                                    code="nul_character")
        if request.path.startswith("/v1/"):
            limit = settings.BILLING_MAX_BODY_BYTES
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit or (not length and self._chunked_too_big(request, limit)):
                return problem_response(
                    status_code=413, title="Request body too large",
                    detail=f"Request bodies are limited to {limit} bytes.",
                    code="body_too_large",
                )
        return self.get_response(request)

    @staticmethod
    def _chunked_too_big(request, limit) -> bool:
        if "chunked" not in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            return False
        body = request.read(limit + 1)
        request._body = body  # later readers get the body we consumed
        request._stream = None
        return len(body) > limit
