"""Demo credits for `make run` (idempotent: customers that already have blocks are skipped)."""

from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from grants import services
from grants.models import CreditBlock
from ledgers.models import Customer

DEMO_EXTERNAL_IDS = ("acme", "globex", "initech", "umbrella")
ACTOR = "system:demo"


@transaction.atomic
def _load_customer(customer: Customer) -> None:
    now = timezone.now()
    D = Decimal
    # Expired history: a block that lived last month and expired with credits left.
    services.credit_increment(customer=customer, actor=ACTOR, amount=D(25),
                              effective_date=now - timedelta(days=60),
                              expiry_date=now - timedelta(days=30), per_unit_cost_basis=D(0),
                              description="Last quarter's promo credits")
    trial = services.credit_increment(
        customer=customer, actor=ACTOR, amount=D(100), per_unit_cost_basis=D(0),
        expiry_date=now + timedelta(days=14), description="Trial credits").credit_block
    services.credit_increment(
        customer=customer, actor=ACTOR, amount=D(500), per_unit_cost_basis=D("0.20"),
        description="Purchased 500 credits")
    services.credit_decrement(customer=customer, actor=ACTOR, amount=D("42.5"),
                              description="API usage")
    services.credit_hold_create(customer=customer, actor=ACTOR, amount=D(30),
                                description="Reserved for a running batch job")
    mistaken = services.credit_increment(customer=customer, actor=ACTOR, amount=D(50),
                                         per_unit_cost_basis=D("0.20"),
                                         description="Duplicate purchase").credit_block
    services.credit_block_void(customer=customer, actor=ACTOR, block_id=mistaken.pk,
                               void_reason="refund", reason="duplicate purchase")
    services.credit_block_change_expiry(customer=customer, actor=ACTOR, block_id=trial.pk,
                                        amount=D(20), target_expiry_date=now + timedelta(days=45),
                                        reason="trial extension")


def load(*, stdout) -> None:
    made = 0
    for customer in Customer.objects.filter(external_customer_id__in=DEMO_EXTERNAL_IDS):
        if CreditBlock.objects.filter(customer=customer).exists():
            continue
        _load_customer(customer)
        made += 1
    if made:
        stdout.write(f"Demo credit ledgers created: {made}")
