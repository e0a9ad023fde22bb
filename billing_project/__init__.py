import decimal

# One fixed decimal context for every thread: wide enough that NUMERIC(30, 12) arithmetic
# (sums, products with prices) never rounds implicitly. Rounding happens only where API.md says.
decimal.DefaultContext.prec = 60
decimal.DefaultContext.rounding = decimal.ROUND_HALF_EVEN
decimal.DefaultContext.traps[decimal.InvalidOperation] = True
decimal.setcontext(decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN))

from billing_project.celery import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
