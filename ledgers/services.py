import secrets
from datetime import datetime

from django.db import IntegrityError, transaction

from billing_project.auth import SCOPES
from billing_project.errors import Conflict, InvalidInput
from ledgers.audit import record_action
from ledgers.models import ApiKey, Customer
from ledgers.selectors import hash_api_key

CUSTOMER_FIELDS = ("name", "email", "external_customer_id", "currency", "timezone", "metadata",
                   "allow_negative_balance", "plan_id", "billing_anchor")
CUSTOMER_UPDATABLE = ("name", "email", "metadata", "timezone", "allow_negative_balance",
                      "plan_id", "external_customer_id")


def api_key_create(*, name: str, scopes: list[str] | None = None) -> tuple[ApiKey, str]:
    """Returns the stored key and the raw key (shown once, never stored)."""
    scopes = list(scopes or SCOPES)
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise InvalidInput(f"Unknown scopes: {', '.join(unknown)}.", code="unknown_scope")
    prefix = secrets.token_hex(4)
    raw_key = f"bk_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(name=name, prefix=prefix, key_hash=hash_api_key(raw_key),
                                scopes=scopes)
    return key, raw_key


def _external_id_conflict(external_customer_id) -> Conflict:
    existing = Customer.objects.filter(external_customer_id=external_customer_id).first()
    return Conflict(
        f"A customer with external_customer_id '{external_customer_id}' already exists.",
        code="duplicate_external_customer_id",
        extra={"conflicting_id": existing.pk if existing else None},
    )


def _customer_snapshot(customer: Customer) -> dict:
    return {field: (getattr(customer, field).isoformat()
                    if isinstance(getattr(customer, field), datetime)
                    else getattr(customer, field)) for field in CUSTOMER_FIELDS}


@transaction.atomic
def customer_create(*, actor, name: str, email: str, external_customer_id: str | None = None,
                    currency: str | None = None, timezone: str = "UTC",
                    metadata: dict | None = None, allow_negative_balance: bool = True,
                    plan_id: str | None = None, billing_anchor: datetime | None = None,
                    ) -> Customer:
    customer = Customer(
        name=name, email=email, external_customer_id=external_customer_id or None,
        currency=currency.upper() if currency and len(currency) == 3 else currency,
        timezone=timezone or "UTC", metadata=metadata or {},
        allow_negative_balance=allow_negative_balance, plan_id=plan_id,
    )
    customer.billing_anchor = billing_anchor or customer.created_at
    try:
        with transaction.atomic():
            customer.save(force_insert=True)
    except IntegrityError as exc:
        if "customer_external_id_unique" in str(exc):
            raise _external_id_conflict(external_customer_id) from None
        raise
    record_action(actor=actor, action="customer.create", target=customer,
                  data={"after": _customer_snapshot(customer)})
    from ledgers.signals import customer_created

    customer_created.send(sender=Customer, customer=customer)
    return customer


@transaction.atomic
def customer_update(*, actor, customer: Customer, reason: str = "", **changes) -> Customer:
    unknown = set(changes) - set(CUSTOMER_UPDATABLE)
    if unknown:
        raise InvalidInput(f"Cannot update {', '.join(sorted(unknown))}.", code="not_updatable")
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    before = _customer_snapshot(customer)
    for field, value in changes.items():
        if field == "external_customer_id":
            value = value or None
        setattr(customer, field, value)
    try:
        with transaction.atomic():
            customer.save(update_fields=list(changes) or None)
    except IntegrityError as exc:
        if "customer_external_id_unique" in str(exc):
            raise _external_id_conflict(changes.get("external_customer_id")) from None
        raise
    record_action(actor=actor, action="customer.update", target=customer, reason=reason,
                  data={"before": before, "after": _customer_snapshot(customer)})
    return customer
