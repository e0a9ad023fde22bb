from decimal import Decimal

from grants import services
from tests.ledgers.factories import CustomerFactory  # noqa: F401


def increment(customer, amount, **kwargs):
    """A credit block through the service (the only way blocks and entries are made)."""
    kwargs.setdefault("actor", "test")
    return services.credit_increment(customer=customer, amount=Decimal(str(amount)),
                                     **kwargs).credit_block


def decrement(customer, amount, **kwargs):
    kwargs.setdefault("actor", "test")
    return services.credit_decrement(customer=customer, amount=Decimal(str(amount)), **kwargs)
