import functools

from django.db import transaction
from django.urls import path
from drf_spectacular.utils import extend_schema

from entitlements import api

_ENTITLEMENT_ROUTES = [
    ("entitlements", api.EntitlementListCreate, "entitlement-list"),
    ("entitlements/<str:key>", api.EntitlementDetail, "entitlement-detail"),
    ("entitlements/<str:key>/value", api.EntitlementValueView, "entitlement-value"),
    ("entitlements/<str:key>/history", api.EntitlementHistoryView, "entitlement-history"),
    ("entitlements/<str:key>/reset", api.EntitlementResetView, "entitlement-reset"),
    ("entitlements/<str:key>/grants", api.EntitlementGrantListCreate, "entitlement-grants"),
]


def _as_view(view):
    # The value endpoint is a hot read path: one consistent query, no request transaction.
    if view is api.EntitlementValueView or issubclass(view, api.EntitlementValueView):
        return transaction.non_atomic_requests(view.as_view())
    return view.as_view()


def _by_external(view, name):
    """The same view, addressing the customer by external id (own operation ids)."""
    attrs = {"by_external": True}
    for method in ("get", "post", "delete"):
        base = getattr(view, method, None)
        if base is None:
            continue

        @functools.wraps(base)
        def handler(self, request, *args, _base=base, **kwargs):
            return _base(self, request, *args, **kwargs)

        handler.kwargs = dict(getattr(base, "kwargs", {}))  # not shared with the base view

        operation_id = f"{name.replace('-', '_')}_{method}_by_external_id"
        attrs[method] = extend_schema(operation_id=operation_id)(handler)
    return type(f"{view.__name__}ByExternalId", (view,), attrs)


urlpatterns = [
    path("features", api.FeatureListCreate.as_view(), name="feature-list"),
    path("features/<str:key>", api.FeatureDetail.as_view(), name="feature-detail"),
    path("grants", api.GrantList.as_view(), name="entitlement-grant-list"),
    path("grants/<str:grant_id>/void", api.GrantVoid.as_view(), name="entitlement-grant-void"),
]
urlpatterns += [
    path(f"customers/external_customer_id/<str:customer_id>/{suffix}",
         _as_view(_by_external(view, name)), name=f"{name}-by-external-id")
    for suffix, view, name in _ENTITLEMENT_ROUTES
]
urlpatterns += [
    path(f"customers/<str:customer_id>/{suffix}", _as_view(view), name=name)
    for suffix, view, name in _ENTITLEMENT_ROUTES
]
