"""Table tests and properties for ledgers.periods (pure Python, no Django needed)."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgers import periods
from ledgers.periods import (
    DAY,
    HOUR,
    MONTH,
    WEEK,
    YEAR,
    Interval,
    add_interval,
    boundaries,
    boundary,
    expiration_at,
    is_boundary,
    iter_boundaries,
    local_date,
    parse_date_or_datetime,
    parse_datetime,
    parse_interval,
    period_containing,
    period_index,
    segments,
    start_of_day,
)

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
ONE_US = timedelta(microseconds=1)


def z(text: str) -> datetime:
    """'2026-03-29T01:00Z' -> aware UTC datetime (test shorthand)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# parse_interval / Interval
# ---------------------------------------------------------------------------------------------

VALID_INTERVALS = [
    # input, months, days, seconds, canonical str
    ("day", 0, 1, 0, "P1D"),
    ("DAY", 0, 1, 0, "P1D"),
    ("Week", 0, 7, 0, "P1W"),
    ("month", 1, 0, 0, "P1M"),
    ("year", 12, 0, 0, "P1Y"),
    ("PT1H", 0, 0, 3600, "PT1H"),
    ("PT60M", 0, 0, 3600, "PT1H"),
    ("PT3600S", 0, 0, 3600, "PT1H"),
    ("PT90M", 0, 0, 5400, "PT1H30M"),
    ("PT1.5H", 0, 0, 5400, "PT1H30M"),
    ("PT1,5H", 0, 0, 5400, "PT1H30M"),
    ("PT1H0.5M", 0, 0, 3630, "PT1H30S"),
    ("PT25H", 0, 0, 90000, "PT25H"),
    ("P1D", 0, 1, 0, "P1D"),
    ("p1d", 0, 1, 0, "P1D"),
    ("P7D", 0, 7, 0, "P1W"),
    ("P2W", 0, 14, 0, "P2W"),
    ("P1W2D", 0, 9, 0, "P9D"),
    ("P1M", 1, 0, 0, "P1M"),
    ("P12M", 12, 0, 0, "P1Y"),
    ("P18M", 18, 0, 0, "P1Y6M"),
    ("P1Y", 12, 0, 0, "P1Y"),
    ("P1DT12H", 0, 1, 43200, "P1DT12H"),
    ("P1DT1M", 0, 1, 60, "P1DT1M"),  # calendar part makes it long enough
    ("P1Y2M3DT4H5M6S", 14, 3, 14706, "P1Y2M3DT4H5M6S"),
    ("P1000Y", 12000, 0, 0, "P1000Y"),
]


@pytest.mark.parametrize(("text", "months", "days", "seconds", "canonical"), VALID_INTERVALS)
def test_parse_interval_valid(text, months, days, seconds, canonical):
    iv = parse_interval(text)
    assert (iv.months, iv.days, iv.seconds) == (months, days, seconds)
    assert str(iv) == canonical
    assert parse_interval(str(iv)) == iv


INVALID_INTERVALS = [
    ("P0D", "zero"),
    ("PT0S", "zero"),
    ("P0Y0M0DT0H", "zero"),
    ("PT30M", "at least 1 hour"),
    ("PT59M59S", "at least 1 hour"),
    ("PT0.5H", "at least 1 hour"),
    ("PT3599S", "at least 1 hour"),
    ("fortnight", "expected day, week, month, year"),
    ("-P1D", "negative"),
    ("-day", "negative"),
    ("", "expected"),
    ("P", "expected"),
    ("PT", "expected"),
    ("P1DT", "expected"),
    ("P1.5D", "expected"),
    ("P1M1Y", "expected"),  # wrong order
    ("1D", "expected"),
    ("PT1H ", "expected"),
    (" day", "expected"),
    ("days", "expected"),
    ("hour", "expected"),
    ("P-1D", "expected"),
    ("PT1.5H30M", "only the last component"),
    ("PT1.0001H", "whole number of seconds"),
    ("P1001Y", "1000 years"),
    ("P99999999999999999999Y", "1000 years"),
]


@pytest.mark.parametrize(("text", "message"), INVALID_INTERVALS)
def test_parse_interval_invalid(text, message):
    with pytest.raises(ValueError, match=message):
        parse_interval(text)


@pytest.mark.parametrize("value", [None, 1, 1.5, timedelta(days=1)])
def test_parse_interval_wrong_type(value):
    with pytest.raises(TypeError):
        parse_interval(value)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, ValueError),
        ({"seconds": 3599}, ValueError),
        ({"days": -1}, ValueError),
        ({"months": -1, "days": 40}, ValueError),
        ({"months": 1.0}, TypeError),
        ({"days": True}, TypeError),
    ],
)
def test_interval_constructor_validates(kwargs, error):
    with pytest.raises(error):
        Interval(**kwargs)


def test_interval_constants_and_names():
    assert (HOUR, DAY, WEEK, MONTH, YEAR) == (
        Interval(seconds=3600),
        Interval(days=1),
        Interval(days=7),
        Interval(months=1),
        Interval(months=12),
    )
    assert [iv.name for iv in (DAY, WEEK, MONTH, YEAR, HOUR)] == [
        "day",
        "week",
        "month",
        "year",
        None,
    ]
    assert parse_interval(MONTH) is MONTH
    assert parse_interval("P1M") == MONTH
    assert MONTH.is_calendar and not HOUR.is_calendar
    assert {parse_interval("P7D"), parse_interval("week"), parse_interval("P1W")} == {WEEK}


# ---------------------------------------------------------------------------------------------
# Month/year anchors at the end of the month (UTC and in a DST zone)
# ---------------------------------------------------------------------------------------------

MONTH_END_SCHEDULES = [
    # anchor (10:00 UTC), boundaries k = 0..14 as dates
    (
        "2023-01-29",
        "2023-01-29 2023-02-28 2023-03-29 2023-04-29 2023-05-29 2023-06-29 2023-07-29 "
        "2023-08-29 2023-09-29 2023-10-29 2023-11-29 2023-12-29 2024-01-29 2024-02-29 "
        "2024-03-29",
    ),
    (
        "2023-01-30",
        "2023-01-30 2023-02-28 2023-03-30 2023-04-30 2023-05-30 2023-06-30 2023-07-30 "
        "2023-08-30 2023-09-30 2023-10-30 2023-11-30 2023-12-30 2024-01-30 2024-02-29 "
        "2024-03-30",
    ),
    (
        "2023-01-31",
        "2023-01-31 2023-02-28 2023-03-31 2023-04-30 2023-05-31 2023-06-30 2023-07-31 "
        "2023-08-31 2023-09-30 2023-10-31 2023-11-30 2023-12-31 2024-01-31 2024-02-29 "
        "2024-03-31",
    ),
    (
        "2024-01-31",
        "2024-01-31 2024-02-29 2024-03-31 2024-04-30 2024-05-31 2024-06-30 2024-07-31 "
        "2024-08-31 2024-09-30 2024-10-31 2024-11-30 2024-12-31 2025-01-31 2025-02-28 "
        "2025-03-31",
    ),
    (
        "2024-02-29",
        "2024-02-29 2024-03-29 2024-04-29 2024-05-29 2024-06-29 2024-07-29 2024-08-29 "
        "2024-09-29 2024-10-29 2024-11-29 2024-12-29 2025-01-29 2025-02-28 2025-03-29 "
        "2025-04-29",
    ),
]


@pytest.mark.parametrize(("anchor_day", "expected"), MONTH_END_SCHEDULES)
def test_month_anchor_end_of_month(anchor_day, expected):
    anchor = z(f"{anchor_day}T10:00Z")
    expected_bounds = [z(f"{d}T10:00Z") for d in expected.split()]
    got = [boundary(anchor, "month", k, "UTC") for k in range(len(expected_bounds))]
    assert got == expected_bounds
    # period_containing agrees with the boundaries, from the middle and the edges of each period
    for start, end in zip(expected_bounds, expected_bounds[1:], strict=False):
        assert period_containing(anchor, "month", start, "UTC") == (start, end)
        assert period_containing(anchor, "month", end - ONE_US, "UTC") == (start, end)
        assert period_containing(anchor, "P1M", start + (end - start) / 2, "UTC") == (start, end)
    # the whole run in one call
    assert (
        boundaries(anchor, "month", expected_bounds[0], expected_bounds[-1], "UTC")
        == (expected_bounds[1:-1])
    )


def test_month_anchor_before_anchor_negative_k():
    anchor = z("2024-03-31T10:00Z")
    expected = ["2023-11-30", "2023-12-31", "2024-01-31", "2024-02-29", "2024-03-31"]
    assert [boundary(anchor, "month", k, "UTC") for k in range(-4, 1)] == [
        z(f"{d}T10:00Z") for d in expected
    ]
    assert period_containing(anchor, "month", z("2024-03-01T00:00Z"), "UTC") == (
        z("2024-02-29T10:00Z"),
        z("2024-03-31T10:00Z"),
    )
    assert period_index(anchor, "month", z("2024-03-01T00:00Z"), "UTC") == -1
    assert period_index(anchor, "month", z("2024-03-31T09:59:59.999999Z"), "UTC") == -1
    assert period_index(anchor, "month", anchor, "UTC") == 0
    assert period_containing(anchor, "month", z("2023-12-01T00:00Z"), "UTC") == (
        z("2023-11-30T10:00Z"),
        z("2023-12-31T10:00Z"),
    )


def test_month_anchor_31st_in_berlin_keeps_wall_clock():
    anchor = datetime(2024, 1, 31, 0, 0, tzinfo=ZoneInfo(BERLIN))  # 2024-01-30T23:00Z
    expected = [
        "2024-01-30T23:00Z",  # Jan 31 00:00 CET
        "2024-02-28T23:00Z",  # Feb 29 00:00 CET (leap year)
        "2024-03-30T23:00Z",  # Mar 31 00:00 CET (DST starts at 02:00 that day)
        "2024-04-29T22:00Z",  # Apr 30 00:00 CEST
        "2024-05-30T22:00Z",
        "2024-06-29T22:00Z",
        "2024-07-30T22:00Z",
        "2024-08-30T22:00Z",
        "2024-09-29T22:00Z",
        "2024-10-30T23:00Z",  # Oct 31 00:00 CET
        "2024-11-29T23:00Z",
        "2024-12-30T23:00Z",
        "2025-01-30T23:00Z",
        "2025-02-27T23:00Z",  # Feb 28 00:00 CET (not a leap year)
        "2025-03-30T22:00Z",  # Mar 31 00:00 CEST
    ]
    assert [boundary(anchor, "month", k, BERLIN) for k in range(15)] == [z(e) for e in expected]


YEAR_FEB29 = [
    (-4, "2020-02-29"),
    (-1, "2023-02-28"),
    (0, "2024-02-29"),
    (1, "2025-02-28"),
    (2, "2026-02-28"),
    (3, "2027-02-28"),
    (4, "2028-02-29"),
    (5, "2029-02-28"),
    (76, "2100-02-28"),  # 2100 is not a leap year
    (80, "2104-02-29"),
]


@pytest.mark.parametrize(("k", "expected"), YEAR_FEB29)
def test_year_anchor_on_feb_29(k, expected):
    anchor = z("2024-02-29T12:00Z")
    assert boundary(anchor, "year", k, "UTC") == z(f"{expected}T12:00Z")
    assert boundary(anchor, "P12M", k, "UTC") == z(f"{expected}T12:00Z")


def test_year_anchor_on_feb_29_periods():
    anchor = z("2024-02-29T12:00Z")
    assert period_containing(anchor, "year", z("2025-03-01T00:00Z"), "UTC") == (
        z("2025-02-28T12:00Z"),
        z("2026-02-28T12:00Z"),
    )
    assert period_containing(anchor, "year", z("2028-02-29T11:59:59Z"), "UTC") == (
        z("2027-02-28T12:00Z"),
        z("2028-02-29T12:00Z"),
    )
    assert period_containing(anchor, "year", z("2024-01-01T00:00Z"), "UTC") == (
        z("2023-02-28T12:00Z"),
        z("2024-02-29T12:00Z"),
    )


# ---------------------------------------------------------------------------------------------
# DST: Europe/Berlin (2026-03-29 02:00->03:00, 2026-10-25 03:00->02:00) and America/New_York
# (2026-03-08 02:00->03:00, 2026-11-01 02:00->01:00)
# ---------------------------------------------------------------------------------------------

DST_PERIODS = [
    # tz, anchor, interval, t, expected start, expected end, expected length
    # day periods across spring-forward (23 h) and fall-back (25 h), wall clock kept (midnight)
    (
        BERLIN,
        "2026-01-01T00:00+01:00",
        "day",
        "2026-03-29T12:00Z",
        "2026-03-28T23:00Z",
        "2026-03-29T22:00Z",
        timedelta(hours=23),
    ),
    (
        BERLIN,
        "2026-01-01T00:00+01:00",
        "day",
        "2026-03-28T23:00Z",
        "2026-03-28T23:00Z",
        "2026-03-29T22:00Z",
        timedelta(hours=23),
    ),
    (
        BERLIN,
        "2026-01-01T00:00+01:00",
        "day",
        "2026-03-29T21:59:59.999999Z",
        "2026-03-28T23:00Z",
        "2026-03-29T22:00Z",
        timedelta(hours=23),
    ),
    (
        BERLIN,
        "2026-01-01T00:00+01:00",
        "day",
        "2026-03-29T22:00Z",
        "2026-03-29T22:00Z",
        "2026-03-30T22:00Z",
        timedelta(hours=24),
    ),
    (
        BERLIN,
        "2026-01-01T00:00+01:00",
        "day",
        "2026-10-25T12:00Z",
        "2026-10-24T22:00Z",
        "2026-10-25T23:00Z",
        timedelta(hours=25),
    ),
    (
        BERLIN,
        "2026-01-01T00:00+01:00",
        "P1D",
        "2026-03-27T12:00Z",
        "2026-03-26T23:00Z",
        "2026-03-27T23:00Z",
        timedelta(hours=24),
    ),
    # week containing spring-forward: Monday 00:00 to Monday 00:00 is 7 days minus 1 hour
    (
        BERLIN,
        "2026-01-05T00:00+01:00",
        "week",
        "2026-03-25T00:00Z",
        "2026-03-22T23:00Z",
        "2026-03-29T22:00Z",
        timedelta(days=7, hours=-1),
    ),
    (
        BERLIN,
        "2026-01-05T00:00+01:00",
        "P1W",
        "2026-10-25T05:00Z",
        "2026-10-18T22:00Z",
        "2026-10-25T23:00Z",
        timedelta(days=7, hours=1),
    ),
    # month of March in Berlin: starts at CET midnight, ends at CEST midnight
    (
        BERLIN,
        "2026-01-01T00:00+01:00",
        "month",
        "2026-03-15T00:00Z",
        "2026-02-28T23:00Z",
        "2026-03-31T22:00Z",
        timedelta(days=31, hours=-1),
    ),
    (
        BERLIN,
        "2026-01-01T00:00+01:00",
        "month",
        "2026-10-31T22:59:59Z",
        "2026-09-30T22:00Z",
        "2026-10-31T23:00Z",
        timedelta(days=31, hours=1),
    ),
    # New York, anchor 09:00 local
    (
        NEW_YORK,
        "2026-01-01T09:00-05:00",
        "day",
        "2026-03-08T12:00Z",
        "2026-03-07T14:00Z",
        "2026-03-08T13:00Z",
        timedelta(hours=23),
    ),
    (
        NEW_YORK,
        "2026-01-01T09:00-05:00",
        "day",
        "2026-11-01T12:00Z",
        "2026-10-31T13:00Z",
        "2026-11-01T14:00Z",
        timedelta(hours=25),
    ),
    (
        NEW_YORK,
        "2026-01-04T00:00-05:00",
        "week",
        "2026-03-15T03:59:59Z",
        "2026-03-08T05:00Z",
        "2026-03-15T04:00Z",
        timedelta(days=7, hours=-1),
    ),
    (
        NEW_YORK,
        "2026-01-04T00:00-05:00",
        "week",
        "2026-03-07T00:00Z",
        "2026-03-01T05:00Z",
        "2026-03-08T05:00Z",
        timedelta(days=7),
    ),
    (
        NEW_YORK,
        "2026-01-04T00:00-05:00",
        "week",
        "2026-03-09T00:00Z",
        "2026-03-08T05:00Z",
        "2026-03-15T04:00Z",
        timedelta(days=7, hours=-1),
    ),
    (
        NEW_YORK,
        "2026-01-31T09:00-05:00",
        "month",
        "2026-03-31T12:59:59Z",
        "2026-02-28T14:00Z",
        "2026-03-31T13:00Z",
        timedelta(days=31, hours=-1),
    ),
    (
        NEW_YORK,
        "2026-01-31T09:00-05:00",
        "month",
        "2026-11-15T00:00Z",
        "2026-10-31T13:00Z",
        "2026-11-30T14:00Z",
        timedelta(days=30, hours=1),
    ),
    # P1DT12H: one calendar day (wall clock) then 12 exact hours
    (
        BERLIN,
        "2026-03-28T12:00+01:00",
        "P1DT12H",
        "2026-03-29T12:00Z",
        "2026-03-28T11:00Z",
        "2026-03-29T22:00Z",
        timedelta(hours=35),
    ),
]


@pytest.mark.parametrize(
    ("tz", "anchor", "interval", "t", "start", "end", "length"),
    DST_PERIODS,
)
def test_dst_periods(tz, anchor, interval, t, start, end, length):
    got = period_containing(datetime.fromisoformat(anchor), interval, z(t), tz)
    assert got == (z(start), z(end))
    assert got[1] - got[0] == length
    assert all(b.tzinfo is UTC for b in got)


@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK])
def test_day_periods_keep_local_midnight_all_year(tz):
    zone = ZoneInfo(tz)
    anchor = datetime(2026, 1, 1, tzinfo=zone)
    start, end = anchor.astimezone(UTC), datetime(2027, 1, 1, tzinfo=zone).astimezone(UTC)
    bounds = [start, *boundaries(anchor, "day", start, end, tz), end]
    assert len(bounds) == 366
    lengths = sorted({(b - a) for a, b in zip(bounds, bounds[1:], strict=False)})
    assert lengths == [timedelta(hours=23), timedelta(hours=24), timedelta(hours=25)]
    assert all(b.astimezone(zone).time() == datetime.min.time() for b in bounds)


@pytest.mark.parametrize(
    ("tz", "start", "end"),
    [
        (BERLIN, "2026-03-28T22:30Z", "2026-03-29T03:30Z"),
        (BERLIN, "2026-10-24T22:30Z", "2026-10-25T03:30Z"),
        (NEW_YORK, "2026-03-08T04:30Z", "2026-03-08T09:30Z"),
        (NEW_YORK, "2026-11-01T03:30Z", "2026-11-01T08:30Z"),
    ],
)
def test_hour_periods_across_dst_are_exactly_3600s(tz, start, end):
    anchor = z("2026-01-01T00:30Z")
    bounds = boundaries(anchor, "PT1H", z(start), z(end), tz)
    assert bounds == [z(start) + timedelta(hours=h) for h in range(1, 5)]
    assert period_containing(anchor, "PT1H", z(start), tz) == (
        z(start),
        z(start) + timedelta(hours=1),
    )
    t = z(start) + timedelta(hours=2, minutes=59)
    assert period_containing(anchor, "PT1H", t, tz) == (
        z(start) + timedelta(hours=2),
        z(start) + timedelta(hours=3),
    )


def test_wall_clock_in_spring_forward_gap_moves_forward():
    # 02:30 does not exist in Berlin on 2026-03-29: it becomes 03:30 CEST (the gap's length later)
    anchor = datetime(2026, 3, 28, 2, 30, tzinfo=ZoneInfo(BERLIN))  # 01:30Z
    assert [boundary(anchor, "day", k, BERLIN) for k in range(-1, 3)] == [
        z("2026-03-27T01:30Z"),
        z("2026-03-28T01:30Z"),
        z("2026-03-29T01:30Z"),  # 03:30 CEST
        z("2026-03-30T00:30Z"),  # 02:30 CEST again
    ]
    assert period_containing(anchor, "day", z("2026-03-29T12:00Z"), BERLIN) == (
        z("2026-03-29T01:30Z"),
        z("2026-03-30T00:30Z"),
    )
    ny = datetime(2026, 2, 8, 2, 30, tzinfo=ZoneInfo(NEW_YORK))
    assert add_interval(ny, "month", 1, NEW_YORK) == z("2026-03-08T07:30Z")  # 03:30 EDT


def test_wall_clock_in_fall_back_overlap_keeps_fold():
    zone = ZoneInfo(BERLIN)
    first = datetime(2026, 10, 24, 2, 30, tzinfo=zone)  # CEST, 00:30Z
    assert boundary(first, "day", 1, BERLIN) == z("2026-10-25T00:30Z")  # first 02:30 (CEST)
    assert boundary(first, "day", 2, BERLIN) == z("2026-10-26T01:30Z")
    second = z("2026-10-25T01:30Z")  # 02:30 CET, the repeated hour
    assert second.astimezone(zone).fold == 1
    assert boundary(second, "day", 0, BERLIN) == second
    assert boundary(second, "day", -1, BERLIN) == z("2026-10-24T00:30Z")
    assert boundary(second, "day", 1, BERLIN) == z("2026-10-26T01:30Z")
    assert period_containing(second, "day", second, BERLIN) == (second, z("2026-10-26T01:30Z"))
    assert period_containing(second, "day", second - ONE_US, BERLIN) == (
        z("2026-10-24T00:30Z"),
        second,
    )


# ---------------------------------------------------------------------------------------------
# add_interval
# ---------------------------------------------------------------------------------------------

ADD_INTERVAL = [
    # t, interval, n, tz, expected
    ("2024-01-31T10:00Z", "month", 1, "UTC", "2024-02-29T10:00Z"),
    ("2024-01-31T10:00Z", "month", 2, "UTC", "2024-03-31T10:00Z"),
    ("2024-01-31T10:00Z", "month", -2, "UTC", "2023-11-30T10:00Z"),
    ("2024-01-31T10:00Z", "month", 0, "UTC", "2024-01-31T10:00Z"),
    ("2024-01-31T10:00Z", "P1M", 13, "UTC", "2025-02-28T10:00Z"),
    ("2024-02-29T10:00Z", "year", 1, "UTC", "2025-02-28T10:00Z"),
    ("2024-02-29T10:00Z", "year", -4, "UTC", "2020-02-29T10:00Z"),
    ("2024-02-29T10:00Z", "P1Y1D", 1, "UTC", "2025-03-01T10:00Z"),
    ("2024-01-31T10:00Z", "P1M1D", 1, "UTC", "2024-03-01T10:00Z"),
    ("2024-01-31T10:00Z", "P1MT1H", 2, "UTC", "2024-03-31T12:00Z"),
    ("2026-03-28T23:00Z", "day", 1, BERLIN, "2026-03-29T22:00Z"),
    ("2026-03-28T23:00Z", "PT24H", 1, BERLIN, "2026-03-29T23:00Z"),
    ("2026-03-28T23:00Z", "week", 1, BERLIN, "2026-04-04T22:00Z"),
    ("2026-03-28T23:00Z", "PT1H", 3, BERLIN, "2026-03-29T02:00Z"),
    ("2026-03-28T23:00Z", "PT1H", -3, BERLIN, "2026-03-28T20:00Z"),
    ("2026-10-31T12:00Z", "day", 1, NEW_YORK, "2026-11-01T13:00Z"),
    ("2026-10-31T12:00Z", "day", 1, "UTC", "2026-11-01T12:00Z"),
    ("2026-10-31T12:00+00:00", "day", 1, timezone(timedelta(hours=5)), "2026-11-01T12:00Z"),
    ("2026-10-31T12:00Z", "day", 1, None, "2026-11-01T12:00Z"),
    ("2026-10-31T12:00Z", "day", 1, ZoneInfo(NEW_YORK), "2026-11-01T13:00Z"),
    ("2026-10-31T12:00:00.123456Z", "month", 1, "UTC", "2026-11-30T12:00:00.123456Z"),
]


@pytest.mark.parametrize(("t", "interval", "n", "tz", "expected"), ADD_INTERVAL)
def test_add_interval(t, interval, n, tz, expected):
    result = add_interval(z(t), interval, n, tz)
    assert result == z(expected)
    assert result.tzinfo is UTC


def test_add_interval_input_with_other_offset():
    t = datetime.fromisoformat("2026-03-29T00:00+01:00")  # midnight CET; DST starts at 02:00
    assert add_interval(t, "day", 1, BERLIN) == z("2026-03-29T22:00Z")
    assert add_interval(t, "day", 1, "America/New_York") == z("2026-03-29T23:00Z")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: add_interval(datetime(2026, 1, 1), "day", 1, "UTC"), ValueError),
        (lambda: add_interval("2026-01-01", "day", 1, "UTC"), TypeError),
        (lambda: add_interval(z("2026-01-01T00:00Z"), "day", 1.0, "UTC"), TypeError),
        (lambda: add_interval(z("2026-01-01T00:00Z"), "day", True, "UTC"), TypeError),
        (lambda: add_interval(z("2026-01-01T00:00Z"), "day", 1, "Mars/Olympus"), ValueError),
        (lambda: add_interval(z("2026-01-01T00:00Z"), "day", 1, 5), TypeError),
        (lambda: add_interval(z("2026-01-01T00:00Z"), "P1000Y", 8, "UTC"), ValueError),
        (lambda: add_interval(z("9999-12-01T00:00Z"), "month", 1, "UTC"), ValueError),
        (lambda: add_interval(z("9999-12-31T00:00Z"), "day", 1, "UTC"), ValueError),
        (lambda: add_interval(z("2026-01-01T00:00Z"), "fortnight", 1, "UTC"), ValueError),
    ],
)
def test_add_interval_rejects(call, error):
    with pytest.raises(error):
        call()


# ---------------------------------------------------------------------------------------------
# boundaries / is_boundary / segments / efficiency
# ---------------------------------------------------------------------------------------------


def test_boundaries_are_strictly_inside():
    anchor = z("2026-01-15T00:00Z")
    assert boundaries(anchor, "month", z("2026-01-15T00:00Z"), z("2026-04-15T00:00Z")) == [
        z("2026-02-15T00:00Z"),
        z("2026-03-15T00:00Z"),
    ]
    assert boundaries(anchor, "month", z("2026-01-14T00:00Z"), z("2026-02-16T00:00Z")) == [
        z("2026-01-15T00:00Z"),
        z("2026-02-15T00:00Z"),
    ]
    assert boundaries(anchor, "month", z("2026-01-16T00:00Z"), z("2026-02-14T00:00Z")) == []
    assert boundaries(anchor, "month", z("2026-03-01T00:00Z"), z("2026-02-01T00:00Z")) == []
    assert boundaries(anchor, "month", anchor, anchor) == []
    assert list(iter_boundaries(anchor, "day", anchor, anchor + timedelta(days=3))) == [
        anchor + timedelta(days=1),
        anchor + timedelta(days=2),
    ]


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        ("2026-01-15T00:00Z", True),
        ("2026-02-15T00:00Z", True),
        ("2025-12-15T00:00Z", True),
        ("2026-02-15T00:00:00.000001Z", False),
        ("2026-02-14T23:59:59.999999Z", False),
        ("2026-02-01T00:00Z", False),
    ],
)
def test_is_boundary(t, expected):
    assert is_boundary(z("2026-01-15T00:00Z"), "month", z(t), "UTC") is expected


def test_segments_split_at_boundaries():
    anchor = z("2026-01-01T00:00Z")
    assert segments(anchor, "day", z("2026-01-01T12:00Z"), z("2026-01-03T06:00Z")) == [
        (z("2026-01-01T12:00Z"), z("2026-01-02T00:00Z")),
        (z("2026-01-02T00:00Z"), z("2026-01-03T00:00Z")),
        (z("2026-01-03T00:00Z"), z("2026-01-03T06:00Z")),
    ]
    assert segments(anchor, "day", z("2026-01-02T00:00Z"), z("2026-01-03T00:00Z")) == [
        (z("2026-01-02T00:00Z"), z("2026-01-03T00:00Z")),
    ]
    assert segments(anchor, "day", z("2026-01-02T00:00Z"), z("2026-01-02T00:00Z")) == []


@pytest.mark.parametrize(
    ("interval", "t"),
    [
        ("month", "9990-06-15T00:00Z"),
        ("month", "0005-06-15T00:00Z"),
        ("year", "9000-01-01T00:00Z"),
        ("day", "9000-01-01T00:00Z"),
        ("PT1H", "9000-01-01T00:00Z"),
        ("PT1H", "0002-01-01T00:00Z"),
        ("P1M3DT5H", "8000-01-01T00:00Z"),
    ],
)
def test_period_containing_is_constant_time(monkeypatch, interval, t):
    calls = 0
    real = periods._add_local

    def counting(*args):
        nonlocal calls
        calls += 1
        return real(*args)

    monkeypatch.setattr(periods, "_add_local", counting)
    anchor = datetime(2024, 1, 31, 9, 0, tzinfo=ZoneInfo(BERLIN))
    start, end = period_containing(anchor, interval, z(t), BERLIN)
    assert start <= z(t) < end
    assert calls <= 8


def test_inputs_must_be_aware():
    aware = z("2026-01-01T00:00Z")
    naive = datetime(2026, 1, 1)
    for call in (
        lambda: period_containing(naive, "day", aware),
        lambda: period_containing(aware, "day", naive),
        lambda: boundaries(aware, "day", naive, aware),
        lambda: is_boundary(aware, "day", naive),
    ):
        with pytest.raises(ValueError, match="timezone-aware"):
            call()


# ---------------------------------------------------------------------------------------------
# expiration_at
# ---------------------------------------------------------------------------------------------

EXPIRATIONS = [
    # effective_at, duration, count, tz, expected
    ("2026-03-28T23:30Z", "hour", 1, BERLIN, "2026-03-29T00:30Z"),
    ("2026-03-29T00:30Z", "hour", 2, BERLIN, "2026-03-29T02:30Z"),  # across the gap: exact
    ("2026-03-29T00:30Z", "HOUR", 24, BERLIN, "2026-03-30T00:30Z"),
    ("2026-03-28T12:00Z", "day", 1, BERLIN, "2026-03-29T11:00Z"),  # 13:00 local kept
    ("2026-03-28T12:00Z", "day", 1, "UTC", "2026-03-29T12:00Z"),
    ("2026-03-28T12:00Z", "Day", 1, "UTC", "2026-03-29T12:00Z"),
    ("2026-03-28T12:00Z", "week", 2, BERLIN, "2026-04-11T11:00Z"),
    ("2026-01-31T12:00Z", "month", 1, "UTC", "2026-02-28T12:00Z"),
    ("2026-01-31T12:00Z", "month", 3, "UTC", "2026-04-30T12:00Z"),
    ("2024-02-29T00:00Z", "year", 1, "UTC", "2025-02-28T00:00Z"),
    ("2024-02-29T00:00Z", "year", 4, "UTC", "2028-02-29T00:00Z"),
    ("2026-10-31T13:00Z", "day", 1, NEW_YORK, "2026-11-01T14:00Z"),
]


@pytest.mark.parametrize(("effective_at", "duration", "count", "tz", "expected"), EXPIRATIONS)
def test_expiration_at(effective_at, duration, count, tz, expected):
    assert expiration_at(z(effective_at), duration, count, tz) == z(expected)


def test_expiration_at_default_tz_is_utc():
    assert expiration_at(z("2026-03-28T12:00Z"), "day", 1) == z("2026-03-29T12:00Z")


@pytest.mark.parametrize(
    ("duration", "count", "error"),
    [
        ("minute", 1, ValueError),
        ("P1D", 1, ValueError),
        ("days", 1, ValueError),
        (None, 1, ValueError),
        ("day", 0, ValueError),
        ("day", -1, ValueError),
        ("day", 1.5, TypeError),
        ("day", True, TypeError),
        ("day", "1", TypeError),
    ],
)
def test_expiration_at_rejects(duration, count, error):
    with pytest.raises(error):
        expiration_at(z("2026-01-01T00:00Z"), duration, count)


# ---------------------------------------------------------------------------------------------
# start_of_day / parse_date_or_datetime / parse_datetime
# ---------------------------------------------------------------------------------------------

START_OF_DAY = [
    (date(2026, 3, 29), BERLIN, "2026-03-28T23:00Z"),
    (date(2026, 3, 30), BERLIN, "2026-03-29T22:00Z"),
    (date(2026, 10, 25), BERLIN, "2026-10-24T22:00Z"),
    (date(2026, 11, 1), NEW_YORK, "2026-11-01T04:00Z"),
    (date(2026, 11, 2), NEW_YORK, "2026-11-02T05:00Z"),
    (date(2026, 11, 2), "UTC", "2026-11-02T00:00Z"),
    (date(2026, 11, 2), "Asia/Kolkata", "2026-11-01T18:30Z"),
    # midnight does not exist (DST starts at 00:00): the day starts at 01:00 local
    (date(2026, 3, 8), "America/Havana", "2026-03-08T05:00Z"),
    (date(2026, 9, 6), "America/Santiago", "2026-09-06T04:00Z"),
]


@pytest.mark.parametrize(("d", "tz", "expected"), START_OF_DAY)
def test_start_of_day(d, tz, expected):
    result = start_of_day(d, tz)
    assert result == z(expected)
    assert result.tzinfo is UTC
    assert local_date(result, tz) == d
    assert local_date(result - ONE_US, tz) == d - timedelta(days=1)


def test_start_of_day_rejects_datetime():
    with pytest.raises(TypeError):
        start_of_day(datetime(2026, 1, 1), "UTC")
    with pytest.raises(TypeError):
        start_of_day("2026-01-01", "UTC")


PARSE_OK = [
    ("2026-11-01", BERLIN, "2026-10-31T23:00Z"),
    ("2026-11-01", NEW_YORK, "2026-11-01T04:00Z"),
    ("2026-11-01", "UTC", "2026-11-01T00:00Z"),
    ("2024-02-29", "UTC", "2024-02-29T00:00Z"),
    ("2026-11-01T00:00:00Z", BERLIN, "2026-11-01T00:00Z"),
    ("2026-11-01T00:00:00z", BERLIN, "2026-11-01T00:00Z"),
    ("2026-11-01t00:00:00Z", BERLIN, "2026-11-01T00:00Z"),
    ("2026-11-01 00:00:00Z", BERLIN, "2026-11-01T00:00Z"),
    ("2026-11-01T01:00:00+01:00", NEW_YORK, "2026-11-01T00:00Z"),
    ("2026-10-31T19:30:00-04:30", "UTC", "2026-11-01T00:00Z"),
    ("2026-11-01T00:00:00-00:00", "UTC", "2026-11-01T00:00Z"),
    ("2026-11-01T00:00:00.5Z", "UTC", "2026-11-01T00:00:00.500000Z"),
    ("2026-11-01T00:00:00.123456Z", "UTC", "2026-11-01T00:00:00.123456Z"),
    ("2026-11-01T00:00:00.1234569Z", "UTC", "2026-11-01T00:00:00.123456Z"),  # truncated
    ("0001-01-01T00:00:00Z", "UTC", "0001-01-01T00:00Z"),
]


@pytest.mark.parametrize(("value", "tz", "expected"), PARSE_OK)
def test_parse_date_or_datetime(value, tz, expected):
    result = parse_date_or_datetime(value, tz)
    assert result == z(expected)
    assert result.tzinfo is UTC


def test_parse_date_or_datetime_objects():
    assert parse_date_or_datetime(date(2026, 11, 1), BERLIN) == z("2026-10-31T23:00Z")
    aware = datetime(2026, 11, 1, 1, tzinfo=ZoneInfo(BERLIN))
    assert parse_date_or_datetime(aware, NEW_YORK) == z("2026-11-01T00:00Z")
    assert parse_datetime(aware) == z("2026-11-01T00:00Z")
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_date_or_datetime(datetime(2026, 11, 1), "UTC")
    with pytest.raises(TypeError):
        parse_date_or_datetime(20261101, "UTC")


PARSE_BAD = [
    ("2026-11-01T00:00:00", "no UTC offset"),
    ("2026-11-01T00:00", "no UTC offset"),
    ("2026-11-01 00:00:00.123", "no UTC offset"),
    ("2026-11-01T00:00Z", "invalid"),  # seconds are required by RFC 3339
    ("2026-11-01T00:00:00+0100", "invalid"),
    ("2026-11-01T00:00:00+01", "invalid"),
    ("2026-11-01T00:00:00+24:00", "invalid UTC offset"),
    ("2026-11-01T00:00:00+01:60", "invalid UTC offset"),
    ("2026-11-31", "invalid date"),
    ("2026-02-29", "invalid date"),
    ("2026-13-01T00:00:00Z", "invalid"),
    ("2026-11-01T24:00:00Z", "invalid"),
    ("2026-11-01T23:59:60Z", "invalid"),
    ("0001-01-01T00:00:00+01:00", "invalid"),  # before year 1 in UTC
    ("26-11-01", "invalid"),
    ("2026/11/01", "invalid"),
    ("20261101", "invalid"),
    ("", "invalid"),
    ("now", "invalid"),
    (" 2026-11-01", "invalid"),
    ("2026-11-01T00:00:00Z ", "invalid"),
]


@pytest.mark.parametrize(("value", "message"), PARSE_BAD)
def test_parse_date_or_datetime_rejects(value, message):
    with pytest.raises(ValueError, match=message):
        parse_date_or_datetime(value, "UTC")


def test_parse_date_unknown_timezone():
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_date_or_datetime("2026-11-01", "Not/AZone")


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

ZONES = [
    "UTC",
    BERLIN,
    NEW_YORK,
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Asia/Kathmandu",  # +05:45
    "America/Santiago",  # DST at midnight
    "America/Havana",
    "Pacific/Chatham",
]

named_or_iso = st.sampled_from(
    [
        "day",
        "week",
        "month",
        "year",
        "PT1H",
        "PT2H",
        "PT90M",
        "P1D",
        "P2W",
        "P3M",
        "P1DT12H",
        "P1M15D",
        "P1YT1H",
        "PT25H",
        "P10D",
    ]
).map(parse_interval)


@st.composite
def random_interval(draw):
    months = draw(st.integers(0, 30))
    days = draw(st.integers(0, 40))
    min_seconds = 0 if (months or days) else 3600
    seconds = draw(st.integers(min_seconds, 4 * 86400))
    return Interval(months=months, days=days, seconds=seconds)


intervals = st.one_of(named_or_iso, random_interval())
instants = st.datetimes(
    min_value=datetime(1950, 1, 1), max_value=datetime(2150, 1, 1), timezones=st.just(UTC)
)
zones = st.sampled_from(ZONES)
PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(anchor=instants, interval=intervals, t=instants, tz=zones)
def test_periods_tile_exactly(anchor, interval, t, tz):
    start, end = period_containing(anchor, interval, t, tz)
    assert start <= t < end
    assert start.tzinfo is UTC and end.tzinfo is UTC
    # the last instant of the period maps back to the same period
    assert period_containing(anchor, interval, end - ONE_US, tz) == (start, end)
    assert period_containing(anchor, interval, start, tz) == (start, end)
    # neighbours share boundaries: no gap, no overlap
    next_start, next_end = period_containing(anchor, interval, end, tz)
    assert next_start == end and next_end > end
    prev_start, prev_end = period_containing(anchor, interval, start - ONE_US, tz)
    assert prev_end == start and prev_start < start
    # boundaries are computed from the anchor
    k = period_index(anchor, interval, t, tz)
    assert (boundary(anchor, interval, k, tz), boundary(anchor, interval, k + 1, tz)) == (
        start,
        end,
    )
    assert is_boundary(anchor, interval, start, tz)
    assert boundaries(anchor, interval, start, end, tz) == []
    assert boundaries(anchor, interval, start - ONE_US, end + ONE_US, tz) == [start, end]


@PROPERTY_SETTINGS
@given(anchor=instants, t=instants, tz=zones, hours=st.integers(1, 72))
def test_exact_hour_periods_have_fixed_length(anchor, t, tz, hours):
    start, end = period_containing(anchor, Interval(seconds=3600 * hours), t, tz)
    assert end - start == timedelta(hours=hours)
    assert (start - anchor) % timedelta(hours=hours) == timedelta(0)


@PROPERTY_SETTINGS
@given(anchor=instants, t=instants, tz=zones, months=st.sampled_from([1, 2, 3, 6, 12, 24]))
def test_month_periods_return_to_anchor_day(anchor, t, tz, months):
    zone = ZoneInfo(tz) if tz != "UTC" else UTC
    start, end = period_containing(anchor, Interval(months=months), t, tz)
    local_anchor = anchor.astimezone(zone)
    for b in (start, end):
        local = b.astimezone(zone)
        last_day = calendar.monthrange(local.year, local.month)[1]
        if local.replace(tzinfo=None).time() == local_anchor.replace(tzinfo=None).time():
            assert local.day == min(local_anchor.day, last_day)
        else:  # the anchor's wall-clock time fell into a DST gap that day: moved forward
            naive = datetime.combine(
                date(local.year, local.month, min(local_anchor.day, last_day)),
                local_anchor.time(),
            )
            assert naive.replace(tzinfo=zone).astimezone(UTC) == b
        assert (local.year * 12 + local.month - local_anchor.year * 12 - local_anchor.month) % (
            months
        ) == 0


@PROPERTY_SETTINGS
@given(anchor=instants, interval=intervals, a=instants, b=instants, tz=zones)
def test_boundaries_match_period_containing(anchor, interval, a, b, tz):
    start, end = min(a, b), max(a, b)
    if end - start > timedelta(days=3 * 366):
        end = start + timedelta(days=3 * 366)
    bounds = boundaries(anchor, interval, start, end, tz)
    assert bounds == sorted(set(bounds))
    assert all(start < x < end for x in bounds)
    pieces = segments(anchor, interval, start, end, tz)
    if start < end:
        assert pieces[0][0] == start and pieces[-1][1] == end
        assert [p[1] for p in pieces[:-1]] == bounds
    # every piece lies within a single period
    for s, e in pieces:
        assert period_containing(anchor, interval, s, tz) == period_containing(
            anchor, interval, e - ONE_US, tz
        )


def test_skipped_calendar_day_does_not_repeat_a_boundary():
    # Samoa skipped 2011-12-30 entirely (UTC-10 -> UTC+14): that day's midnight and the next
    # day's midnight are the same instant, which appears once.
    anchor = z("2011-12-01T10:00Z")  # 00:00 local
    assert boundaries(
        anchor, "day", z("2011-12-28T00:00Z"), z("2012-01-02T00:00Z"), "Pacific/Apia"
    ) == [
        z("2011-12-28T10:00Z"),
        z("2011-12-29T10:00Z"),
        z("2011-12-30T10:00Z"),  # 2011-12-31 00:00 +14
        z("2011-12-31T10:00Z"),
        z("2012-01-01T10:00Z"),
    ]
    assert period_containing(anchor, "day", z("2011-12-30T09:59Z"), "Pacific/Apia") == (
        z("2011-12-29T10:00Z"),
        z("2011-12-30T10:00Z"),
    )
