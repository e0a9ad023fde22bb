from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularJSONAPIView,
    SpectacularSwaggerView,
)

from billing_project import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("v1/openapi.json", SpectacularJSONAPIView.as_view(), name="openapi-schema"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("v1/", include("ledgers.urls")),
    path("v1/", include("metering.urls")),
    path("v1/", include("grants.urls")),
    path("v1/", include("entitlements.urls")),
    path("v1/", include("invoicing.urls")),
    path("", include("invoicing.public_urls")),
]

handler400 = "billing_project.errors.handler400"
handler403 = "billing_project.errors.handler403"
handler404 = "billing_project.errors.handler404"
handler500 = "billing_project.errors.handler500"
