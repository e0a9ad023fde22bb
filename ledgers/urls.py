from django.urls import path

from ledgers import api

urlpatterns = [
    path("customers", api.CustomerListCreate.as_view(), name="customer-list"),
    path("customers/external_customer_id/<str:key>", api.CustomerByExternalId.as_view(),
         name="customer-by-external-id"),
    path("customers/<str:key>", api.CustomerDetail.as_view(), name="customer-detail"),
]
