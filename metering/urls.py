from django.urls import path

from metering import api

urlpatterns = [
    path("ingest", api.IngestView.as_view(), name="events-ingest"),
    path("events/search", api.EventSearchView.as_view(), name="events-search"),
    path("events/backfills", api.BackfillListCreate.as_view(), name="backfill-list"),
    path("events/backfills/<str:backfill_id>", api.BackfillDetail.as_view(),
         name="backfill-detail"),
    path("events/backfills/<str:backfill_id>/close", api.BackfillClose.as_view(),
         name="backfill-close"),
    path("events/backfills/<str:backfill_id>/revert", api.BackfillRevert.as_view(),
         name="backfill-revert"),
    path("events/<str:event_id>", api.EventAmendView.as_view(), name="event-amend"),
    path("events/<str:event_id>/deprecate", api.EventDeprecateView.as_view(),
         name="event-deprecate"),
    path("meters", api.MeterListCreate.as_view(), name="meter-list"),
    path("meters/<str:id_or_slug>", api.MeterDetail.as_view(), name="meter-detail"),
    path("meters/<str:id_or_slug>/usage", api.MeterUsage.as_view(), name="meter-usage"),
]
