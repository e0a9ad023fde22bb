"""Table tests and properties for invoicing.pricing (pure Python, no Django needed)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invoicing.pricing import (
    CUSTOM_UNIT_EXPONENT,
    PriceResult,
    PricingError,
    Tier,
    TierLine,
    format_money,
    minor_unit_exponent,
    normalize_tiers,
    price,
    quantize_for,
    round_money,
    validate_rule,
)

# 0-100 at 0.10, 100-1000 at 0.05 (+5 flat), above 1000 at 0.01 (+1 flat)
TIERS = [
    {"up_to": D(100), "unit_amount": D("0.10")},
    {"up_to": D(1000), "unit_amount": D("0.05"), "flat_amount": D(5)},
    {"up_to": None, "unit_amount": D("0.01"), "flat_amount": D(1)},
]
# first tier with a flat amount, to test "reached when quantity > 0"
FLAT_FIRST = [
    {"up_to": D(10), "unit_amount": D(0), "flat_amount": D("9.99")},
    {"up_to": None, "unit_amount": D("1.5")},
]


# ---------------------------------------------------------------------------------------------
# Graduated
# ---------------------------------------------------------------------------------------------

GRADUATED = [
    # quantity, tiers, currency, unrounded, amount
    ("0", TIERS, "USD", "0", "0.00"),
    ("1", TIERS, "USD", "0.10", "0.10"),
    ("99.99", TIERS, "USD", "9.999", "10.00"),
    ("100", TIERS, "USD", "10.00", "10.00"),  # exactly at up_to: tier 2 not reached, no flat
    ("100.000001", TIERS, "USD", "15.00000005", "15.00"),  # just above: flat 5 added
    ("101", TIERS, "USD", "15.05", "15.05"),
    ("1000", TIERS, "USD", "60.00", "60.00"),
    ("1000.5", TIERS, "USD", "61.005", "61.00"),  # half-even: 61.005 -> 61.00
    ("1001", TIERS, "USD", "61.01", "61.01"),
    ("5000", TIERS, "USD", "101.00", "101.00"),
    ("0.5", TIERS, "USD", "0.050", "0.05"),
    ("0.000001", FLAT_FIRST, "USD", "9.99", "9.99"),  # first tier reached as soon as q > 0
    ("0", FLAT_FIRST, "USD", "0", "0.00"),
    ("10", FLAT_FIRST, "USD", "9.99", "9.99"),
    ("11", FLAT_FIRST, "USD", "11.49", "11.49"),
    ("1001", TIERS, "JPY", "61.01", "61"),
    ("1001", TIERS, "credits", "61.01", "61.010000"),
]


@pytest.mark.parametrize(("quantity", "tiers", "currency", "unrounded", "amount"), GRADUATED)
def test_graduated(quantity, tiers, currency, unrounded, amount):
    result = price("graduated", D(quantity), tiers=tiers, currency=currency)
    assert result.unrounded == D(unrounded)
    assert str(result.amount) == amount
    assert result.amount == round_money(result.unrounded, currency)
    assert sum((line.amount for line in result.tiers), D(0)) == result.unrounded
    assert sum((line.quantity for line in result.tiers), D(0)) == D(quantity)


def test_graduated_breakdown():
    result = price("graduated", D("1000.5"), tiers=TIERS, currency="USD")
    assert [line.as_dict() for line in result.tiers] == [
        {
            "tier_index": 0,
            "first_unit": D(0),
            "up_to": D(100),
            "quantity": D(100),
            "unit_amount": D("0.10"),
            "flat_amount": D(0),
            "amount": D("10.00"),
        },
        {
            "tier_index": 1,
            "first_unit": D(100),
            "up_to": D(1000),
            "quantity": D(900),
            "unit_amount": D("0.05"),
            "flat_amount": D(5),
            "amount": D("50.00"),
        },
        {
            "tier_index": 2,
            "first_unit": D(1000),
            "up_to": None,
            "quantity": D("0.5"),
            "unit_amount": D("0.01"),
            "flat_amount": D(1),
            "amount": D("1.005"),
        },
    ]
    assert result == PriceResult(
        model="graduated",
        currency="USD",
        quantity=D("1000.5"),
        amount=D("61.00"),
        unrounded=D("61.005"),
        tiers=result.tiers,
        packages=None,
    )


def test_graduated_zero_has_no_breakdown():
    assert price("graduated", D(0), tiers=TIERS, currency="USD").tiers == ()


# ---------------------------------------------------------------------------------------------
# Volume
# ---------------------------------------------------------------------------------------------

VOLUME = [
    # quantity, tiers, unrounded, amount (USD), tier index used (None when zero)
    ("0", TIERS, "0", "0.00", None),  # zero usage: no flat amount
    ("1", TIERS, "0.10", "0.10", 0),
    ("100", TIERS, "10.00", "10.00", 0),  # exactly at up_to: still tier 0
    ("100.000001", TIERS, "10.00000005", "10.00", 1),  # 100.000001*0.05 + 5
    ("101", TIERS, "10.05", "10.05", 1),
    ("1000", TIERS, "55.00", "55.00", 1),
    ("1001", TIERS, "11.01", "11.01", 2),  # volume pricing can drop at a tier edge
    ("2000.5", TIERS, "21.005", "21.00", 2),  # half-even
    ("2001.5", TIERS, "21.015", "21.02", 2),  # half-even
    ("0.000001", FLAT_FIRST, "9.99", "9.99", 0),
    ("10", FLAT_FIRST, "9.99", "9.99", 0),
    ("11", FLAT_FIRST, "16.5", "16.50", 1),
]


@pytest.mark.parametrize(("quantity", "tiers", "unrounded", "amount", "index"), VOLUME)
def test_volume(quantity, tiers, unrounded, amount, index):
    result = price("volume", D(quantity), tiers=tiers, currency="USD")
    assert result.unrounded == D(unrounded)
    assert str(result.amount) == amount
    if index is None:
        assert result.tiers == ()
    else:
        (line,) = result.tiers
        assert line.tier_index == index
        assert line.quantity == D(quantity)
        assert line.amount == result.unrounded


def test_volume_breakdown():
    (line,) = price("volume", D(101), tiers=TIERS, currency="USD").tiers
    assert line == TierLine(
        tier_index=1,
        first_unit=D(100),
        up_to=D(1000),
        quantity=D(101),
        unit_amount=D("0.05"),
        flat_amount=D(5),
        amount=D("10.05"),
    )


# ---------------------------------------------------------------------------------------------
# Per unit and package
# ---------------------------------------------------------------------------------------------

PER_UNIT = [
    # quantity, unit_amount, currency, unrounded, amount
    ("0", "0.10", "USD", "0", "0.00"),
    ("3", "0.10", "USD", "0.30", "0.30"),
    ("1.25", "0.10", "USD", "0.125", "0.12"),  # half-even down
    ("1.35", "0.10", "USD", "0.135", "0.14"),  # half-even up
    ("0.5", "1", "JPY", "0.5", "0"),
    ("1.5", "1", "JPY", "1.5", "2"),
    ("2.5", "1", "JPY", "2.5", "2"),
    ("1", "1.0005", "KWD", "1.0005", "1.000"),
    ("1", "1.0015", "BHD", "1.0015", "1.002"),
    ("1", "0.0000005", "credits", "0.0000005", "0.000000"),
    ("1", "0.0000015", "credits", "0.0000015", "0.000002"),
    ("3", "0.3333333", "credits", "0.9999999", "1.000000"),
    ("0.000000000001", "1", "USD", "0.000000000001", "0.00"),
    (
        "999999999999999999.999999999999",
        "999999999999999999.999999999999",
        "USD",
        "999999999999999999999999999998000000.000000000000000000000001",
        "999999999999999999999999999998000000.00",
    ),
]


@pytest.mark.parametrize(("quantity", "unit_amount", "currency", "unrounded", "amount"), PER_UNIT)
def test_per_unit(quantity, unit_amount, currency, unrounded, amount):
    result = price("per_unit", D(quantity), unit_amount=D(unit_amount), currency=currency)
    assert result.unrounded == D(unrounded)
    assert str(result.amount) == amount
    assert result.tiers == () and result.packages is None


PACKAGE = [
    # quantity, unit_amount, package_size, packages, amount (USD)
    ("0", "5", 10, 0, "0.00"),
    ("1", "5", 10, 1, "5.00"),
    ("10", "5", 10, 1, "5.00"),
    ("11", "5", 10, 2, "10.00"),
    ("10.000001", "5", 10, 2, "10.00"),  # fractional quantities round up
    ("0.5", "5", 1, 1, "5.00"),
    ("3", "2.5", 1, 3, "7.50"),
    ("1000", "0.125", 1000, 1, "0.12"),  # half-even once, on the total
    ("3000", "0.125", 1000, 3, "0.38"),
    ("25", "5", D(10), 3, "15.00"),
    ("25", "5", "10", 3, "15.00"),
    ("25", "5", D("10.0"), 3, "15.00"),
]


@pytest.mark.parametrize(("quantity", "unit_amount", "size", "packages", "amount"), PACKAGE)
def test_package(quantity, unit_amount, size, packages, amount):
    result = price(
        "package", D(quantity), unit_amount=D(unit_amount), package_size=size, currency="USD"
    )
    assert result.packages == packages
    assert result.unrounded == packages * D(unit_amount)
    assert str(result.amount) == amount


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "per_unit", "unit_amount": D(3)},
        {"model": "package", "unit_amount": D(3), "package_size": 4},
        {"model": "graduated", "tiers": TIERS},
        {"model": "volume", "tiers": TIERS},
    ],
)
@pytest.mark.parametrize("currency", ["USD", "JPY", "KWD", "credits"])
def test_zero_usage_costs_nothing(kwargs, currency):
    kwargs = dict(kwargs)
    model = kwargs.pop("model")
    for zero in (D(0), D("0.000"), D("-0"), 0, "0"):
        result = price(model, zero, currency=currency, **kwargs)
        assert result.unrounded == 0 and not result.unrounded.is_signed()
        assert result.amount == 0 and not result.amount.is_signed()
        assert result.amount == round_money(D(0), currency)
        assert result.tiers == ()


def test_inputs_as_int_and_decimal_strings():
    tiers = [
        {"up_to": "100", "unit_amount": "0.10"},
        {"up_to": None, "unit_amount": 0, "flat_amount": "1"},
    ]
    result = price("graduated", "150", tiers=tiers, currency="USD")
    assert result.unrounded == D("11.00")
    assert price("per_unit", 7, unit_amount="1.5", currency="usd").amount == D("10.50")
    assert price("per_unit", "1e3", unit_amount="0.001", currency="USD").amount == D("1.00")


def test_tier_objects_are_accepted():
    tiers = normalize_tiers(TIERS)
    assert tiers[1] == Tier(up_to=D(1000), unit_amount=D("0.05"), flat_amount=D(5))
    assert tiers[0].flat_amount == 0
    assert price("graduated", D(150), tiers=tiers, currency="USD") == price(
        "graduated", D(150), tiers=TIERS, currency="USD"
    )


# ---------------------------------------------------------------------------------------------
# Currencies and rounding
# ---------------------------------------------------------------------------------------------

EXPONENTS = [
    ("USD", 2),
    ("EUR", 2),
    ("usd", 2),
    ("GBP", 2),
    ("HUF", 2),
    ("CHF", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("CLP", 0),
    ("VND", 0),
    ("ISK", 0),
    ("XOF", 0),
    ("BHD", 3),
    ("KWD", 3),
    ("JOD", 3),
    ("OMR", 3),
    ("TND", 3),
    ("IQD", 3),
    ("LYD", 3),
    ("CLF", 4),
    ("UYW", 4),
    ("credits", 6),
    ("tokens", 6),
    ("XAU", 6),
    ("ABC", 6),
    ("CREDITS", 6),
]


@pytest.mark.parametrize(("currency", "exponent"), EXPONENTS)
def test_minor_unit_exponent(currency, exponent):
    assert minor_unit_exponent(currency) == exponent
    assert quantize_for(currency) == D(1).scaleb(-exponent)
    assert quantize_for(currency).as_tuple().exponent == -exponent


def test_custom_unit_exponent_constant():
    assert CUSTOM_UNIT_EXPONENT == 6


ROUNDING = [
    # amount, currency, rounded string
    ("0.125", "USD", "0.12"),
    ("0.135", "USD", "0.14"),
    ("0.145", "USD", "0.14"),
    ("0.155", "USD", "0.16"),
    ("0.1251", "USD", "0.13"),
    ("-0.125", "USD", "-0.12"),
    ("-0.001", "USD", "0.00"),  # no negative zero
    ("12.5", "USD", "12.50"),
    ("12", "USD", "12.00"),
    ("0.5", "JPY", "0"),
    ("1.5", "JPY", "2"),
    ("2.5", "JPY", "2"),
    ("1234.5", "KRW", "1234"),
    ("1.0005", "KWD", "1.000"),
    ("1.0015", "KWD", "1.002"),
    ("1.0000005", "credits", "1.000000"),
    ("1.0000015", "credits", "1.000002"),
    ("1E+3", "USD", "1000.00"),
    ("1E-20", "credits", "0.000000"),
    ("123456789012345678901234567890.125", "USD", "123456789012345678901234567890.12"),
]


@pytest.mark.parametrize(("amount", "currency", "expected"), ROUNDING)
def test_round_money_half_even(amount, currency, expected):
    rounded = round_money(D(amount), currency)
    assert str(rounded) == expected
    assert format_money(D(amount), currency) == expected


def test_format_money_never_uses_exponent_notation():
    assert format_money(D("0E-10"), "credits") == "0.000000"
    assert format_money(D("1E+5"), "JPY") == "100000"
    assert format_money(0, "USD") == "0.00"


def test_rounding_happens_once_not_per_tier():
    # each tier line is x.xx5: rounding per tier would give 0.02 + 0.02 = 0.04
    tiers = [{"up_to": D(1), "unit_amount": D("0.015")}, {"up_to": None, "unit_amount": D("0.015")}]
    result = price("graduated", D(2), tiers=tiers, currency="USD")
    assert [line.amount for line in result.tiers] == [D("0.015"), D("0.015")]
    assert result.unrounded == D("0.030")
    assert result.amount == D("0.03")


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

INVALID_RULES = [
    # (model, kwargs, code)
    ("flat", {"unit_amount": D(1)}, "unknown_model"),
    ("PER_UNIT", {"unit_amount": D(1)}, "unknown_model"),
    (None, {}, "unknown_model"),
    ("per_unit", {}, "missing_unit_amount"),
    ("package", {"package_size": 10}, "missing_unit_amount"),
    ("per_unit", {"unit_amount": D("-0.01")}, "negative_price"),
    ("package", {"unit_amount": D(-1), "package_size": 10}, "negative_price"),
    ("per_unit", {"unit_amount": D("NaN")}, "invalid_amount"),
    ("per_unit", {"unit_amount": D("Infinity")}, "invalid_amount"),
    ("per_unit", {"unit_amount": "abc"}, "invalid_amount"),
    ("per_unit", {"unit_amount": " 1"}, "invalid_amount"),
    ("per_unit", {"unit_amount": "1_000"}, "invalid_amount"),
    ("per_unit", {"unit_amount": "inf"}, "invalid_amount"),
    ("per_unit", {"unit_amount": ""}, "invalid_amount"),
    ("per_unit", {"unit_amount": D(1), "tiers": TIERS}, "unexpected_parameter"),
    ("per_unit", {"unit_amount": D(1), "package_size": 5}, "unexpected_parameter"),
    ("graduated", {"tiers": TIERS, "unit_amount": D(1)}, "unexpected_parameter"),
    ("volume", {"tiers": TIERS, "package_size": 3}, "unexpected_parameter"),
    ("package", {"unit_amount": D(1), "tiers": TIERS, "package_size": 3}, "unexpected_parameter"),
    ("package", {"unit_amount": D(1)}, "missing_package_size"),
    ("package", {"unit_amount": D(1), "package_size": 0}, "invalid_package_size"),
    ("package", {"unit_amount": D(1), "package_size": -5}, "invalid_package_size"),
    ("package", {"unit_amount": D(1), "package_size": D("2.5")}, "invalid_package_size"),
    ("package", {"unit_amount": D(1), "package_size": D("NaN")}, "invalid_package_size"),
    ("package", {"unit_amount": D(1), "package_size": "ten"}, "invalid_package_size"),
    ("graduated", {}, "missing_tiers"),
    ("volume", {}, "missing_tiers"),
    ("graduated", {"tiers": []}, "empty_tiers"),
    ("volume", {"tiers": ()}, "empty_tiers"),
    ("graduated", {"tiers": {"up_to": None, "unit_amount": 1}}, "invalid_tier"),
    ("graduated", {"tiers": "tiers"}, "invalid_tier"),
    ("graduated", {"tiers": [[None, 1]]}, "invalid_tier"),
    (
        "graduated",
        {"tiers": [{"up_to": None, "unit_amount": 1, "flat_ammount": 1}]},
        "invalid_tier",
    ),
    ("graduated", {"tiers": [{"up_to": None}]}, "missing_unit_amount"),
    ("graduated", {"tiers": [{"up_to": None, "unit_amount": None}]}, "missing_unit_amount"),
    (
        "volume",
        {"tiers": [{"up_to": D(10), "unit_amount": 1}, {"up_to": None, "flat_amount": 1}]},
        "missing_unit_amount",
    ),
    ("graduated", {"tiers": [{"up_to": None, "unit_amount": D(-1)}]}, "negative_price"),
    (
        "volume",
        {"tiers": [{"up_to": None, "unit_amount": 1, "flat_amount": D("-0.5")}]},
        "negative_price",
    ),
    ("graduated", {"tiers": [{"up_to": None, "unit_amount": "x"}]}, "invalid_amount"),
    (
        "graduated",
        {
            "tiers": [
                {"up_to": D(100), "unit_amount": 1},
                {"up_to": D(100), "unit_amount": 1},
                {"up_to": None, "unit_amount": 1},
            ]
        },
        "tiers_out_of_order",
    ),
    (
        "volume",
        {
            "tiers": [
                {"up_to": D(100), "unit_amount": 1},
                {"up_to": D(50), "unit_amount": 1},
                {"up_to": None, "unit_amount": 1},
            ]
        },
        "tiers_out_of_order",
    ),
    (
        "graduated",
        {"tiers": [{"up_to": None, "unit_amount": 1}, {"up_to": D(100), "unit_amount": 1}]},
        "unbounded_tier_not_last",
    ),
    (
        "volume",
        {"tiers": [{"up_to": None, "unit_amount": 1}, {"up_to": None, "unit_amount": 1}]},
        "unbounded_tier_not_last",
    ),
    ("graduated", {"tiers": [{"up_to": D(100), "unit_amount": 1}]}, "last_tier_bounded"),
    (
        "volume",
        {"tiers": [{"up_to": D(10), "unit_amount": 1}, {"up_to": D(100), "unit_amount": 1}]},
        "last_tier_bounded",
    ),
    (
        "graduated",
        {"tiers": [{"up_to": D(0), "unit_amount": 1}, {"up_to": None, "unit_amount": 1}]},
        "invalid_tier_bound",
    ),
    (
        "graduated",
        {"tiers": [{"up_to": D(-5), "unit_amount": 1}, {"up_to": None, "unit_amount": 1}]},
        "invalid_tier_bound",
    ),
    ("graduated", {"tiers": [{"up_to": D("Infinity"), "unit_amount": 1}]}, "invalid_tier_bound"),
    (
        "graduated",
        {"tiers": [{"up_to": "lots", "unit_amount": 1}, {"up_to": None, "unit_amount": 1}]},
        "invalid_tier_bound",
    ),
]


@pytest.mark.parametrize(("model", "kwargs", "code"), INVALID_RULES)
def test_validate_rule_errors(model, kwargs, code):
    with pytest.raises(PricingError) as excinfo:
        validate_rule(model, **kwargs)
    assert excinfo.value.code == code
    assert str(excinfo.value) == excinfo.value.message
    with pytest.raises(PricingError) as excinfo:
        price(model, D(1), currency="USD", **kwargs)
    assert excinfo.value.code == code


def test_error_names_the_field():
    with pytest.raises(PricingError) as excinfo:
        validate_rule(
            "graduated",
            tiers=[
                {"up_to": D(10), "unit_amount": 1},
                {"up_to": D(5), "unit_amount": 1},
                {"up_to": None, "unit_amount": 1},
            ],
        )
    assert excinfo.value.field == "tiers[1].up_to"
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        ("per_unit", {"unit_amount": D(0)}),
        ("per_unit", {"unit_amount": D("0.000000000001")}),
        ("package", {"unit_amount": D(1), "package_size": 1}),
        ("package", {"unit_amount": D(1), "package_size": D("1000.00")}),
        ("graduated", {"tiers": [{"up_to": None, "unit_amount": 0}]}),
        (
            "volume",
            {
                "tiers": [
                    {"up_to": D("0.5"), "unit_amount": 1, "flat_amount": None},
                    {"up_to": None, "unit_amount": 1},
                ]
            },
        ),
        ("graduated", {"tiers": TIERS}),
        ("volume", {"tiers": FLAT_FIRST}),
    ],
)
def test_validate_rule_accepts(model, kwargs):
    assert validate_rule(model, **kwargs) is None


@pytest.mark.parametrize(
    "call",
    [
        lambda: validate_rule("per_unit", unit_amount=0.1),
        lambda: validate_rule("per_unit", unit_amount=True),
        lambda: validate_rule("package", unit_amount=D(1), package_size=2.0),
        lambda: validate_rule("graduated", tiers=[{"up_to": None, "unit_amount": 0.5}]),
        lambda: validate_rule(
            "graduated",
            tiers=[{"up_to": 10.0, "unit_amount": 1}, {"up_to": None, "unit_amount": 1}],
        ),
        lambda: validate_rule(
            "volume", tiers=[{"up_to": None, "unit_amount": 1, "flat_amount": 0.0}]
        ),
        lambda: price("per_unit", 1.5, unit_amount=D(1), currency="USD"),
        lambda: price("per_unit", [1], unit_amount=D(1), currency="USD"),
        lambda: round_money(0.125, "USD"),
    ],
)
def test_floats_are_rejected(call):
    with pytest.raises(TypeError):
        call()


@pytest.mark.parametrize(
    ("quantity", "currency", "code"),
    [
        (D(-1), "USD", "negative_quantity"),
        (D("-0.000001"), "USD", "negative_quantity"),
        (D("NaN"), "USD", "invalid_quantity"),
        (D("-Infinity"), "USD", "invalid_quantity"),
        ("many", "USD", "invalid_quantity"),
        (D(1), "", "invalid_currency"),
        (D(1), " USD", "invalid_currency"),
        (D(1), None, "invalid_currency"),
        (D("1E+99999"), "USD", "precision_exceeded"),
        (
            D(
                "1.0000000000000000000000000000000000000000000000000000000000000000000000000000000"
                "00000000000000000000000001"
            ),
            "USD",
            "precision_exceeded",
        ),
    ],
)
def test_price_input_errors(quantity, currency, code):
    with pytest.raises(PricingError) as excinfo:
        price("per_unit", quantity, unit_amount=D("1.1"), currency=currency)
    assert excinfo.value.code == code


def test_round_money_errors():
    with pytest.raises(PricingError) as excinfo:
        round_money(D("NaN"), "USD")
    assert excinfo.value.code == "invalid_amount"
    with pytest.raises(PricingError) as excinfo:
        minor_unit_exponent("")
    assert excinfo.value.code == "invalid_currency"


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

amounts = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False)
quantities = st.decimals(
    min_value=0, max_value=10**7, places=6, allow_nan=False, allow_infinity=False
)
currencies = st.sampled_from(["USD", "JPY", "KWD", "credits", "CLF"])


@st.composite
def tier_lists(draw):
    bounds = sorted(
        set(
            draw(
                st.lists(
                    st.decimals(
                        min_value=D("0.001"),
                        max_value=10**6,
                        places=3,
                        allow_nan=False,
                        allow_infinity=False,
                    ),
                    max_size=5,
                )
            )
        )
    )
    ups = [*bounds, None]
    return [{"up_to": up, "unit_amount": draw(amounts), "flat_amount": draw(amounts)} for up in ups]


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)


@PROPERTY_SETTINGS
@given(tiers=tier_lists(), a=quantities, b=quantities, currency=currencies)
def test_graduated_is_monotone(tiers, a, b, currency):
    low, high = min(a, b), max(a, b)
    p_low = price("graduated", low, tiers=tiers, currency=currency)
    p_high = price("graduated", high, tiers=tiers, currency=currency)
    assert p_low.unrounded <= p_high.unrounded
    assert p_low.amount <= p_high.amount


@PROPERTY_SETTINGS
@given(tiers=tier_lists(), q=quantities, currency=currencies)
def test_graduated_breakdown_adds_up(tiers, q, currency):
    result = price("graduated", q, tiers=tiers, currency=currency)
    assert sum((line.quantity for line in result.tiers), D(0)) == q
    assert sum((line.amount for line in result.tiers), D(0)) == result.unrounded
    normalized = normalize_tiers(tiers)
    for line in result.tiers:
        tier = normalized[line.tier_index]
        assert line.quantity > 0
        assert line.flat_amount == tier.flat_amount
        assert line.amount == line.quantity * tier.unit_amount + tier.flat_amount
        assert tier.up_to is None or line.first_unit + line.quantity <= tier.up_to


@PROPERTY_SETTINGS
@given(tiers=tier_lists(), q=quantities, currency=currencies)
def test_volume_uses_the_containing_tier(tiers, q, currency):
    result = price("volume", q, tiers=tiers, currency=currency)
    if q == 0:
        assert result.unrounded == 0 and result.tiers == ()
        return
    normalized = normalize_tiers(tiers)
    index = next(i for i, t in enumerate(normalized) if t.up_to is None or q <= t.up_to)
    tier = normalized[index]
    assert index == 0 or q > normalized[index - 1].up_to
    assert result.unrounded == tier.unit_amount * q + tier.flat_amount
    assert [line.tier_index for line in result.tiers] == [index]


@PROPERTY_SETTINGS
@given(
    model=st.sampled_from(["per_unit", "package", "graduated", "volume"]),
    tiers=tier_lists(),
    unit_amount=amounts,
    size=st.integers(1, 1000),
    q=quantities,
    currency=currencies,
)
def test_rounding_happens_once(model, tiers, unit_amount, size, q, currency):
    kwargs = {
        "per_unit": {"unit_amount": unit_amount},
        "package": {"unit_amount": unit_amount, "package_size": size},
        "graduated": {"tiers": tiers},
        "volume": {"tiers": tiers},
    }[model]
    result = price(model, q, currency=currency, **kwargs)
    assert result.amount == round_money(result.unrounded, currency)
    assert result.amount.as_tuple().exponent == -minor_unit_exponent(currency)
    assert abs(result.amount - result.unrounded) <= quantize_for(currency) / 2
    if model == "package":
        assert (result.packages - 1) * size < q <= result.packages * size or q == 0
        assert result.unrounded == result.packages * unit_amount
    if model == "per_unit":
        assert result.unrounded == q * unit_amount
