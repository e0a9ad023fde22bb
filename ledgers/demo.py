"""Demo customers for `make run` (idempotent: keyed by external_customer_id)."""

from ledgers.models import Customer
from ledgers.services import customer_create

DEMO_CUSTOMERS = [
    {"external_customer_id": "acme", "name": "Acme Corp", "email": "billing@acme.example",
     "currency": "USD", "timezone": "America/New_York", "metadata": {"segment": "enterprise"}},
    {"external_customer_id": "globex", "name": "Globex", "email": "ap@globex.example",
     "currency": "EUR", "timezone": "Europe/Berlin", "metadata": {"segment": "mid-market"}},
    {"external_customer_id": "initech", "name": "Initech", "email": "finance@initech.example",
     "currency": "USD", "timezone": "UTC", "allow_negative_balance": False},
    {"external_customer_id": "umbrella", "name": "Umbrella Research",
     "email": "billing@umbrella.example", "currency": "USD", "timezone": "Asia/Tokyo"},
]


def load(*, stdout) -> None:
    made = 0
    for values in DEMO_CUSTOMERS:
        external_id = values["external_customer_id"]
        if not Customer.objects.filter(external_customer_id=external_id).exists():
            customer_create(actor="system:demo", **values)
            made += 1
    if made:
        stdout.write(f"Demo customers created: {made}")
