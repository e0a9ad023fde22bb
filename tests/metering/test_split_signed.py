"""metering.selectors.split_range_signed: long raw edges of additive aggregates are read as
their whole hour minus the rest of it, and the signed pieces still cover exactly the range."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from metering import selectors
from metering.models import DAY, HOUR, Meter
from metering.selectors import RAW, split_range, split_range_signed, window_params

T = datetime(2026, 3, 7, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def at(minutes: int) -> datetime:
    return T + minutes * M


@pytest.mark.parametrize(("start", "end", "expected"), [
    # short raw edges stay raw
    (at(20), at(45), [(RAW, at(20), at(45), 1)]),
    (at(10), at(40), [(RAW, at(10), at(40), 1)]),  # exactly half an hour
    # the current hour up to now: the hour minus what lies after now
    (at(0), at(50), [(HOUR, at(0), at(60), 1), (RAW, at(50), at(60), -1)]),
    (at(5), at(55), [(HOUR, at(0), at(60), 1), (RAW, at(0), at(5), -1),
                     (RAW, at(55), at(60), -1)]),
    (at(5), at(60), [(HOUR, at(0), at(60), 1), (RAW, at(0), at(5), -1)]),
    # a raw segment across one hour boundary: one part per hour
    (at(20), at(100), [(HOUR, at(0), at(60), 1), (RAW, at(0), at(20), -1),
                       (HOUR, at(60), at(120), 1), (RAW, at(100), at(120), -1)]),
    (at(40), at(80), [(RAW, at(40), at(60), 1), (RAW, at(60), at(80), 1)]),
    (at(50), at(70), [(RAW, at(50), at(60), 1), (RAW, at(60), at(70), 1)]),
    # whole hours in the middle are untouched
    (at(10), at(185), [(HOUR, at(0), at(60), 1), (RAW, at(0), at(10), -1),
                       (HOUR, at(60), at(180), 1), (RAW, at(180), at(185), 1)]),
])
def test_table(start, end, expected):
    assert split_range_signed(start, end, subtractable=True) == expected


@pytest.mark.parametrize(("start", "end", "now", "expected"), [
    # a range ending now: the current hour minus what lies after now (nothing to read)
    (at(0), at(10), at(10), [(HOUR, at(0), at(60), 1), (RAW, at(10), at(60), -1)]),
    (at(-30), at(10), at(10), [(RAW, at(-30), at(0), 1), (HOUR, at(0), at(60), 1),
                               (RAW, at(10), at(60), -1)]),
    # unless the part of the hour before the edge is the longer
    (at(20), at(25), at(25), [(RAW, at(20), at(25), 1)]),
    (at(5), at(25), at(25), [(HOUR, at(0), at(60), 1), (RAW, at(0), at(5), -1),
                             (RAW, at(25), at(60), -1)]),
    # edges wholly in the past follow the half-hour rule
    (at(0), at(10), at(200), [(RAW, at(0), at(10), 1)]),
    (at(0), at(40), at(200), [(HOUR, at(0), at(60), 1), (RAW, at(40), at(60), -1)]),
])
def test_table_with_now(start, end, now, expected):
    assert split_range_signed(start, end, subtractable=True, now=now) == expected


def test_the_last_hour_of_the_calendar_is_read_raw():
    end = datetime(9999, 12, 31, 23, 50, tzinfo=UTC)
    assert split_range_signed(end - timedelta(days=40), end, subtractable=True)[-1] == (
        RAW, datetime(9999, 12, 31, 23, tzinfo=UTC), end, 1)
    assert split_range_signed(end - timedelta(minutes=45), end, subtractable=True) == [
        (RAW, end - timedelta(minutes=45), end, 1)]


def test_hour_floor_is_exact_far_from_1970():
    value = datetime(2516, 6, 1, 10, 59, 59, 999999, tzinfo=UTC)
    assert split_range_signed(value, value + timedelta(minutes=41), subtractable=True)[0] == (
        RAW, value, datetime(2516, 6, 1, 11, tzinfo=UTC), 1)


def test_not_additive_is_split_range():
    rng = random.Random(7)
    for _ in range(200):
        start = T + timedelta(seconds=rng.randrange(-10**6, 10**6))
        end = start + timedelta(microseconds=rng.randrange(1, 3 * 86400 * 10**6))
        assert split_range_signed(start, end, subtractable=False) == [
            (size, s, e, 1) for size, s, e in split_range(start, end)]


def test_signed_pieces_cover_the_range_exactly():
    """At every instant the signs of the pieces containing it add up to 1 inside the range and
    to 0 outside; negative pieces are raw, within a positive hour, and no raw piece is longer
    than half an hour."""
    rng = random.Random(11)
    for _ in range(300):
        start = T + timedelta(microseconds=rng.randrange(-10**11, 10**11))
        end = start + timedelta(microseconds=rng.randrange(1, 2 * 86400 * 10**6))
        now = rng.choice([None, start + (end - start) * rng.random(), end])
        pieces = split_range_signed(start, end, subtractable=True, now=now)
        cuts = sorted({t for _, s, e, _ in pieces for t in (s, e)} | {start, end})
        for t in [*cuts, *(a + (b - a) / 2 for a, b in zip(cuts, cuts[1:]))]:
            covered = sum(sign for _, s, e, sign in pieces if s <= t < e)
            assert covered == (1 if start <= t < end else 0), (start, end, t, pieces)
        for size, s, e, sign in pieces:
            assert size in (RAW, HOUR, DAY)
            if size == RAW and now is None:
                assert e - s <= timedelta(minutes=30), (start, end, pieces)
            if sign == -1:
                assert size == RAW
                assert any(k == HOUR and g == 1 and hs <= s and e <= he
                           for k, hs, he, g in pieces)


def test_window_params_scalar_raw_windows_up_to_the_limit(monkeypatch):
    pieces = [(0, RAW, at(i), at(i + 1), 1) for i in range(3)] + [(1, HOUR, at(60), at(120), 1)]
    params = window_params(pieces)
    assert params["raw_windows"] == 3
    assert (params["ri2"], params["rs2"], params["re2"], params["rg2"]) == (0, at(2), at(3), 1)
    assert params["wk"] == [RAW, RAW, RAW, HOUR]
    monkeypatch.setattr(selectors, "MAX_SCALAR_RAW_WINDOWS", 2)
    params = window_params(pieces)
    assert params["raw_windows"] is None and "ri0" not in params


@pytest.mark.django_db
@pytest.mark.parametrize("aggregation", ["min", "max", "latest", "unique_count"])
def test_negative_windows_refused_for_aggregations_that_do_not_add_up(aggregation):
    meter = Meter(aggregation=aggregation, event_name="x", value_property="v")
    params = window_params([(0, HOUR, at(0), at(60), 1), (0, RAW, at(50), at(60), -1)])
    with pytest.raises(ValueError):
        selectors._usage_sql(meter, per_customer=True, customer_given=True, group_by=(),
                             filters={}, params=params,
                             unique=aggregation == "unique_count")
