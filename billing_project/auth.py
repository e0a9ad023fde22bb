"""API keys: `Authorization: Bearer <key>`, scopes ingest / read / write (API.md §0)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

SCOPES = ("ingest", "read", "write")


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        from ledgers.selectors import api_key_for_raw_key

        key = api_key_for_raw_key(raw_key=parts[1])
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return (ApiKeyUser(key), key)

    def authenticate_header(self, request):
        return self.keyword


class ApiKeyUser:
    """request.user for API calls: not a Django user, but carries the key (the actor)."""

    is_authenticated = True
    is_staff = False
    is_active = True

    def __init__(self, api_key):
        self.api_key = api_key
        self.pk = None

    def __str__(self):
        return f"api_key:{self.api_key.name}"


def required_scope(request, view) -> str:
    explicit = getattr(view, "required_scope", None)
    if isinstance(explicit, dict):
        explicit = explicit.get(request.method)
    if explicit:
        return explicit
    return "read" if request.method in ("GET", "HEAD", "OPTIONS") else "write"


class HasScope(permissions.BasePermission):
    """Views may set `required_scope` ("ingest" / "read" / "write", or a {method: scope} map)."""

    message = "This API key lacks the required scope."

    def has_permission(self, request, view):
        key = request.auth
        if key is None:
            raise exceptions.NotAuthenticated(
                "Missing API key: send 'Authorization: Bearer <key>'.")
        scope = required_scope(request, view)
        if scope not in key.scopes:
            self.message = f"This API key lacks the '{scope}' scope."
            return False
        return True


class ApiKeySchema(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "API key (create_api_key)"}
