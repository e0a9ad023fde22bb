from django.urls import path

from grants import api

EXTERNAL = "customers/external_customer_id/<str:external_customer_id>/credits"
BY_ID = "customers/<str:customer_id>/credits"

urlpatterns = [
    path("credit_blocks/<str:block_id>", api.CreditBlockDetail.as_view(),
         name="credit-block-detail"),
]
for prefix, suffix, view_name in ((EXTERNAL, "ByExternalId", "-by-external-id"),
                                  (BY_ID, "", "")):
    urlpatterns += [
        path(prefix, getattr(api, f"CreditBlockList{suffix}").as_view(),
             name=f"credits-list{view_name}"),
        path(f"{prefix}/balance", getattr(api, f"CreditBalance{suffix}").as_view(),
             name=f"credits-balance{view_name}"),
        path(f"{prefix}/ledger", getattr(api, f"LedgerEntryList{suffix}").as_view(),
             name=f"credits-ledger{view_name}"),
        path(f"{prefix}/ledger_entry", getattr(api, f"LedgerEntryCreate{suffix}").as_view(),
             name=f"credits-ledger-entry{view_name}"),
        path(f"{prefix}/ledger/<str:entry_id>/commit",
             getattr(api, f"LedgerEntryCommit{suffix}").as_view(),
             name=f"credits-ledger-commit{view_name}"),
        path(f"{prefix}/ledger/<str:entry_id>/release",
             getattr(api, f"LedgerEntryRelease{suffix}").as_view(),
             name=f"credits-ledger-release{view_name}"),
        path(f"{prefix}/top_ups", getattr(api, f"TopUpListCreate{suffix}").as_view(),
             name=f"credits-top-ups{view_name}"),
        path(f"{prefix}/top_ups/<str:top_up_id>", getattr(api, f"TopUpDetail{suffix}").as_view(),
             name=f"credits-top-up-detail{view_name}"),
    ]
