from django.apps import AppConfig


class EntitlementsConfig(AppConfig):
    name = "entitlements"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from metering.signals import usage_changed

        usage_changed.connect(_drop_stale_snapshots, dispatch_uid="entitlements.snapshots")


def _drop_stale_snapshots(sender, *, customer_id, start, end, **kwargs):
    """Past usage changed (amendment, deprecation, backfill): cached balances from then on go."""
    from entitlements.services import snapshots_invalidate

    snapshots_invalidate(customer_id=customer_id, since=start)
