"""Scheduled credit jobs (API.md §7): they write what reads already compute."""

from django.db.models import Q

from billing_project.errors import Conflict
from billing_project.jobs import job
from grants import services
from grants.models import CreditBlock, TopUp


@job("expire_credits", every_seconds=60,
     description="Writes one credit_block_expiry entry per credit block past its expiry "
                 "(expiry dates are day boundaries in the customer's time zone).")
def expire_credits(*, as_of) -> dict:
    """Per ledger, under its lock; the per-block partial unique constraint makes a duplicate
    from a concurrent worker collide instead of doubling."""
    ledger_ids = (CreditBlock.objects.filter(status__in=services.OPEN, expires_at__lte=as_of)
                  .order_by("ledger_id").values_list("ledger_id", flat=True).distinct())
    expired = ledgers = duplicates = 0
    for ledger_id in list(ledger_ids):
        try:
            entries = services.credit_ledger_settle(ledger_id=ledger_id, at=as_of,
                                                    actor="system:expire_credits")
        except Conflict:
            duplicates += 1
            continue
        ledgers += 1
        expired += sum(1 for e in entries if e.entry_type == "credit_block_expiry")
    return {"ledgers": ledgers, "expiry_entries": expired, "duplicates": duplicates}


@job("run_top_ups", every_seconds=60,
     description="Adds the top-up increment once each time a balance falls below its "
                 "top-up threshold.")
def run_top_ups(*, as_of) -> dict:
    top_up_ids = (TopUp.objects.filter(deleted_at__isnull=True)
                  .filter(Q(active_from__lte=as_of)).order_by("pk").values_list("pk", flat=True))
    fired = 0
    for top_up_id in list(top_up_ids):
        if services.top_up_run(top_up_id=top_up_id, at=as_of) is not None:
            fired += 1
    return {"top_ups": fired}
