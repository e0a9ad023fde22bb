from django.conf import settings

from billing_project.jobs import job
from ledgers.models import IdempotencyRecord


@job("expire_idempotency_keys", every_seconds=3600,
     description="Deletes stored Idempotency-Key responses older than 24 h.")
def expire_idempotency_keys(*, as_of) -> dict:
    deleted, _ = IdempotencyRecord.objects.filter(
        created_at__lt=as_of - settings.BILLING_IDEMPOTENCY_TTL).delete()
    return {"deleted": deleted}
