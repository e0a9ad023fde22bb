from django.dispatch import Signal

# Sent inside the transaction when counted usage in the past changes (amendment, deprecation,
# backfill close or revert). kwargs: customer_id (None: every customer), start, end.
# Entitlements drop cached balance snapshots from `start` on.
usage_changed = Signal()
