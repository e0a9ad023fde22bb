"""Signal receivers: every new customer gets a credit ledger in its default currency, so
staff can credit it from the admin before any API write."""

from django.dispatch import receiver

from grants.services import credit_currency
from ledgers.models import Ledger
from ledgers.signals import customer_created


@receiver(customer_created, dispatch_uid="grants.create_default_ledger")
def create_default_ledger(sender, customer, **kwargs) -> None:
    Ledger.objects.bulk_create(
        [Ledger(customer=customer, currency=credit_currency(customer, None))],
        ignore_conflicts=True)

