import hashlib

from django.db.models import QuerySet

from billing_project.db import columns, execute_prepared, model_from_row
from billing_project.errors import NotFound
from ledgers.models import ApiKey, Customer


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


_API_KEY_SQL = (f"SELECT {columns(ApiKey)} FROM {ApiKey._meta.db_table} "
                "WHERE key_hash = %s AND revoked_at IS NULL")


def api_key_for_raw_key(*, raw_key: str) -> ApiKey | None:
    """The live key (None: unknown or revoked). Runs on every API request: a prepared
    statement on the unique ``key_hash`` index."""
    rows = execute_prepared(_API_KEY_SQL, [hash_api_key(raw_key)], fetch=True)
    return model_from_row(ApiKey, rows[0]) if rows else None


def customer_list() -> QuerySet[Customer]:
    return Customer.objects.all()


def customer_get(*, customer_id: str | None = None,
                 external_customer_id: str | None = None) -> Customer:
    """By id or by external id; NotFound (404) otherwise."""
    try:
        if customer_id is not None:
            return Customer.objects.get(pk=customer_id)
        return Customer.objects.get(external_customer_id=external_customer_id)
    except Customer.DoesNotExist:
        which = customer_id if customer_id is not None else external_customer_id
        raise NotFound(f"No customer '{which}'.", code="customer_not_found") from None
