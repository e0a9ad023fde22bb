"""Exact decimal rules of API.md §0: parse inputs, normalise outputs. Never float."""

from decimal import Decimal, InvalidOperation

MAX_FRACTION_DIGITS = 12
MAX_MAGNITUDE = Decimal(10) ** 18
DB_MAX_DIGITS = 30  # NUMERIC(30, 12): 18 integer digits + 12 fractional digits
DB_DECIMAL_PLACES = 12
FRACTION_QUANTUM = Decimal(1).scaleb(-MAX_FRACTION_DIGITS)


class DecimalInputError(ValueError):
    pass


def parse_decimal(value) -> Decimal:
    """A JSON number (already Decimal/int), or a decimal string -> Decimal, or DecimalInputError."""
    if isinstance(value, bool) or value is None:
        raise DecimalInputError("A number is required.")
    if isinstance(value, float):
        raise DecimalInputError("Binary floating point numbers are not accepted.")
    if isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, Decimal):
        result = value
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise DecimalInputError("A number is required.")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise DecimalInputError(f"'{value}' is not a decimal number.") from None
    else:
        raise DecimalInputError("A number is required.")
    if not result.is_finite():
        raise DecimalInputError("NaN and Infinity are not accepted.")
    if abs(result) >= MAX_MAGNITUDE:
        raise DecimalInputError("The magnitude must be below 10^18.")
    if result.as_tuple().exponent < -MAX_FRACTION_DIGITS and result != result.quantize(
            FRACTION_QUANTUM):
        raise DecimalInputError(f"At most {MAX_FRACTION_DIGITS} fractional digits are accepted.")
    return normalize(result)


def normalize(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation (10, not 1E+1)."""
    if value == 0:
        return Decimal(0)
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()
