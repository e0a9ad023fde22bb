"""Pricing engine: turns a usage quantity into an amount of money (pure Python, no Django).

Models (API.md section 6):

* ``per_unit``: ``quantity * unit_amount``.
* ``graduated``: every unit is priced at the rate of the tier it falls in; a tier's
  ``flat_amount`` is added once when the tier is reached, i.e. when the quantity exceeds the
  previous tier's ``up_to`` (for the first tier: when the quantity is > 0).
* ``volume``: all units are priced at the rate of the tier the total quantity falls in, plus that
  tier's ``flat_amount``. A zero quantity costs nothing (no flat amount).
* ``package``: ``unit_amount`` per started package of ``package_size`` units; partial (and
  fractional) quantities round up to the next whole package.

Tiers are ``{"up_to": Decimal | None, "unit_amount": Decimal, "flat_amount": Decimal = 0}``;
``up_to`` is an inclusive upper bound, ``None`` means infinity. Tiers must be strictly
ascending, ``up_to > 0``, and the last tier (only the last) must be unbounded, so every quantity
has a price.

Money is ``Decimal`` only: float inputs raise ``TypeError``; ints, Decimals and decimal strings
are accepted. Arithmetic runs in a local context with 100 significant digits in which any
inexact operation raises, so the unrounded result is exact. The total is rounded once, half-even,
to the currency's minor unit (ISO 4217 exponent; unknown/custom units such as ``credits``: 6).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DecimalException,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Any

__all__ = [
    "CUSTOM_UNIT_EXPONENT",
    "MODELS",
    "PriceResult",
    "PricingError",
    "Tier",
    "TierLine",
    "format_money",
    "minor_unit_exponent",
    "normalize_tiers",
    "price",
    "quantize_for",
    "round_money",
    "validate_rule",
]

MODELS = ("per_unit", "graduated", "volume", "package")
CUSTOM_UNIT_EXPONENT = 6

# Exact arithmetic: 100 digits is far more than two 30-digit operands (API inputs are < 10^18
# with at most 12 fractional digits) can produce; anything inexact raises instead of rounding.
_EXACT = Context(
    prec=100,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)
# Rounding to the minor unit is inexact by design: same precision, no Inexact trap.
_ROUNDING = Context(
    prec=100,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)

_ZERO = Decimal(0)


class PricingError(ValueError):
    """An invalid pricing rule or input. ``code`` is stable; ``field`` names the culprit."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"PricingError({self.code!r}, {self.message!r}, field={self.field!r})"


# --------------------------------------------------------------------------------------------
# Currencies and rounding
# --------------------------------------------------------------------------------------------

# ISO 4217 minor-unit exponents other than 2.
_EXPONENTS = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}
# ISO 4217 currencies with two decimals (current, plus a few recently withdrawn ones that may
# still appear in historical data).
_TWO_DECIMALS = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN
    BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT
    LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO
    NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS
    SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD
    XCG YER ZAR ZMW ZWG ZWL
    """.split()
)


def _check_currency(currency: object) -> str:
    if not isinstance(currency, str) or not currency.strip() or currency != currency.strip():
        raise PricingError(
            "invalid_currency",
            "currency must be a non-empty string without surrounding whitespace",
            field="currency",
        )
    return currency


def minor_unit_exponent(currency: str) -> int:
    """Decimal places of ``currency``: ISO 4217 minor unit (USD 2, JPY 0, KWD 3, CLF 4).

    ISO codes are matched case-insensitively; anything else (a custom unit such as ``credits``,
    or ISO codes without a minor unit such as ``XAU``) gets 6.
    """
    code = _check_currency(currency).upper()
    if code in _EXPONENTS:
        return _EXPONENTS[code]
    if code in _TWO_DECIMALS:
        return 2
    return CUSTOM_UNIT_EXPONENT


def quantize_for(currency: str) -> Decimal:
    """The quantum of ``currency``'s minor unit: ``Decimal('0.01')`` for USD, ``Decimal('1')``
    for JPY, ``Decimal('0.000001')`` for custom units."""
    return Decimal(1).scaleb(-minor_unit_exponent(currency))


def round_money(amount: Decimal | int | str, currency: str) -> Decimal:
    """Round ``amount`` half-even to ``currency``'s minor unit (never returns negative zero)."""
    value = _to_decimal(amount, field="amount", code="invalid_amount")
    quantum = quantize_for(currency)
    try:
        with localcontext(_ROUNDING):
            rounded = value.quantize(quantum)
    except DecimalException as exc:
        raise PricingError(
            "precision_exceeded", f"amount {amount} is too large to round", field="amount"
        ) from exc
    return rounded.copy_abs() if rounded.is_zero() else rounded


def format_money(amount: Decimal | int | str, currency: str) -> str:
    """``round_money`` as a plain decimal string (``"12.50"``, ``"1300"``, ``"0.000001"``)."""
    return format(round_money(amount, currency), "f")


# --------------------------------------------------------------------------------------------
# Input normalisation and validation
# --------------------------------------------------------------------------------------------


_DECIMAL_STRING = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _to_decimal(value: object, *, field: str, code: str) -> Decimal:
    """Decimal from a Decimal, int or decimal string; floats and bools raise TypeError."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{field} must be a Decimal, int or decimal string, not a float/bool")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        if _DECIMAL_STRING.fullmatch(value) is None:
            raise PricingError(code, f"{field} must be a decimal number", field=field)
        result = Decimal(value)
    else:
        raise TypeError(
            f"{field} must be a Decimal, int or decimal string, not {type(value).__name__}"
        )
    if not result.is_finite():
        raise PricingError(code, f"{field} must be a finite decimal number", field=field)
    return result


def _non_negative_amount(value: object, field: str) -> Decimal:
    amount = _to_decimal(value, field=field, code="invalid_amount")
    if amount < 0:
        raise PricingError("negative_price", f"{field} must not be negative", field=field)
    return amount + 0 if amount.is_zero() else amount  # drop negative zero


@dataclass(frozen=True, slots=True)
class Tier:
    """One validated tier. ``up_to`` is the inclusive upper bound (``None`` = infinity)."""

    up_to: Decimal | None
    unit_amount: Decimal
    flat_amount: Decimal = _ZERO

    def as_dict(self) -> dict[str, Decimal | None]:
        return {
            "up_to": self.up_to,
            "unit_amount": self.unit_amount,
            "flat_amount": self.flat_amount,
        }


_TIER_KEYS = frozenset({"up_to", "unit_amount", "flat_amount"})


def normalize_tiers(tiers: Iterable[Mapping[str, Any] | Tier] | None) -> tuple[Tier, ...]:
    """Validate tiers and return them as :class:`Tier` objects (raises :class:`PricingError`).

    Codes: ``missing_tiers``, ``empty_tiers``, ``invalid_tier``, ``missing_unit_amount``,
    ``invalid_amount``, ``negative_price``, ``invalid_tier_bound``, ``tiers_out_of_order``,
    ``unbounded_tier_not_last``, ``last_tier_bounded``.
    """
    if tiers is None:
        raise PricingError("missing_tiers", "tiers are required for this model", field="tiers")
    if isinstance(tiers, (str, bytes, Mapping)) or not isinstance(tiers, Iterable):
        raise PricingError("invalid_tier", "tiers must be a list of tiers", field="tiers")
    items = list(tiers)
    if not items:
        raise PricingError("empty_tiers", "at least one tier is required", field="tiers")
    result: list[Tier] = []
    previous: Decimal | None = None
    for index, item in enumerate(items):
        where = f"tiers[{index}]"
        if isinstance(item, Tier):
            item = item.as_dict()
        if not isinstance(item, Mapping):
            raise PricingError("invalid_tier", f"{where} must be an object", field=where)
        unknown = set(item) - _TIER_KEYS
        if unknown:
            raise PricingError(
                "invalid_tier",
                f"{where} has unknown fields: {', '.join(sorted(map(str, unknown)))} "
                "(allowed: up_to, unit_amount, flat_amount)",
                field=where,
            )
        if item.get("unit_amount") is None:
            raise PricingError(
                "missing_unit_amount",
                f"{where}.unit_amount is required",
                field=f"{where}.unit_amount",
            )
        unit_amount = _non_negative_amount(item["unit_amount"], f"{where}.unit_amount")
        flat_raw = item.get("flat_amount")
        flat_amount = (
            _ZERO if flat_raw is None else _non_negative_amount(flat_raw, f"{where}.flat_amount")
        )
        up_to_raw = item.get("up_to")
        up_to: Decimal | None = None
        if up_to_raw is not None:
            up_to = _to_decimal(up_to_raw, field=f"{where}.up_to", code="invalid_tier_bound")
            if up_to <= 0:
                raise PricingError(
                    "invalid_tier_bound",
                    f"{where}.up_to must be greater than 0",
                    field=f"{where}.up_to",
                )
        if index > 0 and result[-1].up_to is None:
            raise PricingError(
                "unbounded_tier_not_last",
                f"tiers[{index - 1}] has no up_to (infinity), so it must be the last tier",
                field=f"tiers[{index - 1}].up_to",
            )
        if up_to is not None and previous is not None and up_to <= previous:
            raise PricingError(
                "tiers_out_of_order",
                f"{where}.up_to ({up_to}) must be greater than the previous tier's ({previous})",
                field=f"{where}.up_to",
            )
        result.append(Tier(up_to=up_to, unit_amount=unit_amount, flat_amount=flat_amount))
        previous = up_to
    if result[-1].up_to is not None:
        raise PricingError(
            "last_tier_bounded",
            "the last tier must have up_to null (infinity) so that every quantity has a price",
            field=f"tiers[{len(result) - 1}].up_to",
        )
    return tuple(result)


def _package_size(value: object) -> int:
    if value is None:
        raise PricingError(
            "missing_package_size",
            "package_size is required for the package model",
            field="package_size",
        )
    size = _to_decimal(value, field="package_size", code="invalid_package_size")
    if size <= 0 or size != size.to_integral_value():
        raise PricingError(
            "invalid_package_size",
            "package_size must be a whole number greater than 0",
            field="package_size",
        )
    return int(size)


@dataclass(frozen=True, slots=True)
class _Rule:
    model: str
    unit_amount: Decimal | None
    tiers: tuple[Tier, ...]
    package_size: int | None


def _parse_rule(model: object, unit_amount: object, tiers: object, package_size: object) -> _Rule:
    if model not in MODELS:
        raise PricingError(
            "unknown_model", f"model must be one of {', '.join(MODELS)}", field="model"
        )
    given = {"unit_amount": unit_amount, "tiers": tiers, "package_size": package_size}
    allowed = {
        "per_unit": {"unit_amount"},
        "package": {"unit_amount", "package_size"},
        "graduated": {"tiers"},
        "volume": {"tiers"},
    }[model]
    for name, value in given.items():
        if value is not None and name not in allowed:
            raise PricingError(
                "unexpected_parameter", f"{name} is not used by the {model} model", field=name
            )
    if model in ("per_unit", "package"):
        if unit_amount is None:
            raise PricingError(
                "missing_unit_amount",
                f"unit_amount is required for the {model} model",
                field="unit_amount",
            )
        amount = _non_negative_amount(unit_amount, "unit_amount")
        size = _package_size(package_size) if model == "package" else None
        return _Rule(model, amount, (), size)
    return _Rule(model, None, normalize_tiers(tiers), None)  # type: ignore[arg-type]


def validate_rule(
    model: str,
    *,
    unit_amount: Decimal | int | str | None = None,
    tiers: Iterable[Mapping[str, Any] | Tier] | None = None,
    package_size: Decimal | int | str | None = None,
) -> None:
    """Raise :class:`PricingError` when the rule cannot price usage; return None when valid.

    Codes: ``unknown_model``, ``unexpected_parameter`` (e.g. tiers on per_unit),
    ``missing_unit_amount``, ``missing_package_size``, ``invalid_package_size`` (must be a whole
    number > 0), ``invalid_amount`` (NaN, Infinity, not a number), ``negative_price``, and the
    tier codes of :func:`normalize_tiers`. Floats raise ``TypeError``.
    """
    _parse_rule(model, unit_amount, tiers, package_size)


# --------------------------------------------------------------------------------------------
# Pricing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierLine:
    """The part of a graduated/volume price attributed to one tier (unrounded amounts).

    ``first_unit`` is the exclusive lower bound of the tier (the previous tier's ``up_to``, or
    0), ``up_to`` its inclusive upper bound (``None`` = infinity), ``quantity`` the units priced
    at this tier (for volume: the whole quantity), ``amount = quantity * unit_amount +
    flat_amount``.
    """

    tier_index: int
    first_unit: Decimal
    up_to: Decimal | None
    quantity: Decimal
    unit_amount: Decimal
    flat_amount: Decimal
    amount: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {
            "tier_index": self.tier_index,
            "first_unit": self.first_unit,
            "up_to": self.up_to,
            "quantity": self.quantity,
            "unit_amount": self.unit_amount,
            "flat_amount": self.flat_amount,
            "amount": self.amount,
        }


@dataclass(frozen=True, slots=True)
class PriceResult:
    """``amount`` is ``unrounded`` rounded once (half-even) to the currency's minor unit."""

    model: str
    currency: str
    quantity: Decimal
    amount: Decimal
    unrounded: Decimal
    tiers: tuple[TierLine, ...] = ()
    packages: int | None = None


def _graduated(quantity: Decimal, tiers: tuple[Tier, ...]) -> list[TierLine]:
    lines: list[TierLine] = []
    lower = _ZERO
    for index, tier in enumerate(tiers):
        if quantity <= lower:  # tier not reached
            break
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        units = upper - lower
        lines.append(
            TierLine(
                tier_index=index,
                first_unit=lower,
                up_to=tier.up_to,
                quantity=units,
                unit_amount=tier.unit_amount,
                flat_amount=tier.flat_amount,
                amount=units * tier.unit_amount + tier.flat_amount,
            )
        )
        if tier.up_to is None:
            break
        lower = tier.up_to
    return lines


def _volume(quantity: Decimal, tiers: tuple[Tier, ...]) -> list[TierLine]:
    if quantity.is_zero():
        return []
    lower = _ZERO
    for index, tier in enumerate(tiers):
        if tier.up_to is None or quantity <= tier.up_to:
            return [
                TierLine(
                    tier_index=index,
                    first_unit=lower,
                    up_to=tier.up_to,
                    quantity=quantity,
                    unit_amount=tier.unit_amount,
                    flat_amount=tier.flat_amount,
                    amount=quantity * tier.unit_amount + tier.flat_amount,
                )
            ]
        lower = tier.up_to
    raise AssertionError("validated tiers end with an unbounded tier")  # pragma: no cover


def price(
    model: str,
    quantity: Decimal | int | str,
    *,
    unit_amount: Decimal | int | str | None = None,
    tiers: Iterable[Mapping[str, Any] | Tier] | None = None,
    package_size: Decimal | int | str | None = None,
    currency: str,
) -> PriceResult:
    """Price ``quantity`` units with the rule; validates the rule first (see :func:`validate_rule`).

    ``quantity`` must be >= 0 (``negative_quantity``; clamp before calling if your meter can
    go negative) and finite (``invalid_quantity``). The breakdown in ``tiers`` lists only the
    tiers that were reached (graduated) or the one tier used (volume); it is empty for a zero
    quantity and for per_unit/package.
    """
    rule = _parse_rule(model, unit_amount, tiers, package_size)
    _check_currency(currency)
    qty = _to_decimal(quantity, field="quantity", code="invalid_quantity")
    if qty < 0:
        raise PricingError("negative_quantity", "quantity must not be negative", field="quantity")
    if qty.is_zero():
        qty = _ZERO + qty  # normalise -0
    packages: int | None = None
    lines: list[TierLine] = []
    try:
        with localcontext(_EXACT):
            if rule.model == "per_unit":
                unrounded = qty * rule.unit_amount  # type: ignore[operator]
            elif rule.model == "package":
                whole, rest = divmod(qty, Decimal(rule.package_size))  # type: ignore[arg-type]
                packages = int(whole) + (0 if rest.is_zero() else 1)
                unrounded = packages * rule.unit_amount  # type: ignore[operator]
            else:
                lines = (_graduated if rule.model == "graduated" else _volume)(qty, rule.tiers)
                unrounded = sum((line.amount for line in lines), _ZERO)
    except DecimalException as exc:
        raise PricingError(
            "precision_exceeded",
            "the price cannot be computed exactly (numbers too large or too precise)",
            field="quantity",
        ) from exc
    return PriceResult(
        model=rule.model,
        currency=currency,
        quantity=qty,
        amount=round_money(unrounded, currency),
        unrounded=unrounded,
        tiers=tuple(lines),
        packages=packages,
    )
