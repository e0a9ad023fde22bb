"""Scheduled jobs: settle_usage and close_billing_periods (API.md §7)."""

from django.conf import settings

from billing_project.jobs import job
from invoicing import billing


@job("settle_usage", every_seconds=300,
     description="Pays priced usage of the current billing period from credit blocks "
                 "(decrement entries with price_id), once.")
def settle_usage(*, as_of) -> dict:
    return billing.settle_usage(as_of=as_of)


@job("close_billing_periods", every_seconds=900,
     description="Creates each finished billing period's draft invoice once and issues drafts "
                 "after BILLING_INVOICE_GRACE_PERIOD.")
def close_billing_periods(*, as_of) -> dict:
    return billing.close_billing_periods(
        as_of=as_of, grace=getattr(settings, "BILLING_INVOICE_GRACE_PERIOD", None))
