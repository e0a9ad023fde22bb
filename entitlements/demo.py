"""Demo features and entitlements for `make run` (idempotent: keyed by feature key and
customer). Usage comes from metering's demo events, spread over the current month."""

from datetime import UTC
from decimal import Decimal

from django.utils import timezone

from entitlements import services
from entitlements.models import Entitlement, Feature
from ledgers.models import Customer

DEMO_METER = "tokens"  # metering's demo meter (sum of `tokens`, grouped by `model`)


def _feature(key: str, **values) -> Feature:
    feature = Feature.objects.filter(key=key, archived_at__isnull=True).first()
    return feature or services.feature_create(actor="system:demo", key=key, **values)


def _meter_exists() -> bool:
    try:
        from metering.models import Meter
    except ImportError:  # pragma: no cover - metering is part of the project
        return False
    return Meter.objects.filter(slug=DEMO_METER, archived_at__isnull=True).exists()


def load(*, stdout) -> None:
    made = 0
    sso = _feature("sso", name="Single sign-on")
    tokens = None
    if _meter_exists():
        tokens = _feature("ai_tokens", name="AI tokens", meter_slug=DEMO_METER)
    now = timezone.now().astimezone(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for external_id, plan in (("acme", "enterprise"), ("globex", "starter")):
        customer = Customer.objects.filter(external_customer_id=external_id).first()
        if customer is None:
            continue
        active = Entitlement.objects.filter(customer=customer, deleted_at__isnull=True)
        if plan == "enterprise" and not active.filter(feature=sso).exists():
            services.entitlement_create(actor="system:demo", customer=customer,
                                        type="boolean", feature_key=sso.key)
            made += 1
        if tokens is None or active.filter(feature=tokens).exists():
            continue
        entitlement = services.entitlement_create(
            actor="system:demo", customer=customer, type="metered", feature_key=tokens.key,
            usage_period={"interval": "month", "anchor": month_start},
            measure_usage_from=month_start, is_soft_limit=plan == "enterprise",
            issue_after_reset=Decimal(50_000) if plan == "starter" else None,
            preserve_overage_at_reset=plan == "starter")
        # A weekly allowance (refilled, no rollover) burned first...
        services.grant_create(actor="system:demo", entitlement=entitlement,
                              amount=Decimal(150_000), priority=1, effective_at=month_start,
                              expiration={"duration": "year", "count": 1},
                              recurrence={"interval": "week"}, max_rollover_amount=Decimal(0))
        # ...then a prepaid pack whose leftover (up to 100k) rolls over at each reset.
        services.grant_create(actor="system:demo", entitlement=entitlement,
                              amount=Decimal(500_000), priority=2, effective_at=month_start,
                              expiration={"duration": "month", "count": 3},
                              min_rollover_amount=Decimal(0),
                              max_rollover_amount=Decimal(100_000))
        made += 1
    if made:
        stdout.write(f"Demo entitlements created: {made}")
