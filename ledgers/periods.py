"""Calendar arithmetic for billing periods, usage periods, recurrences and expirations.

Pure standard library (no Django), so it can be tested exhaustively and reused by reads, jobs and
previews alike.

Conventions
-----------
* Every instant going in must be timezone-aware; every instant coming out is aware UTC
  (``tzinfo=datetime.timezone.utc``). Naive datetimes raise ``ValueError``.
* An :class:`Interval` has three parts, applied in this order:

  1. ``months`` (years are 12 months): calendar months in the time zone. The wall-clock time and
     the day of month are kept; a day that does not exist in the target month is clamped to the
     month's last day (Jan 31 + 1 month = Feb 28/29).
  2. ``days`` (weeks are 7 days): calendar days in the time zone; the wall-clock time is kept
     across DST changes (a day can last 23 or 25 hours).
  3. ``seconds`` (hours, minutes, seconds): exact elapsed time (an hour is always 3600 s).

* A wall-clock time that does not exist (spring-forward gap) is moved forward by the length of
  the gap (02:30 on the spring-forward day in Berlin becomes 03:30 CEST). An ambiguous wall-clock
  time (fall-back) keeps the ``fold`` of the starting instant (the first occurrence unless the
  starting instant itself was in the repeated hour).
* Periods are half-open ``[start, end)``. The boundaries of a periodic schedule are
  ``boundary(anchor, interval, k)`` for every integer ``k`` (negative too), each computed from the
  *anchor* in one step. So an anchor on the 31st yields Jan 31, Feb 28, Mar 31, Apr 30, ...: the
  schedule always returns to the anchor day, and consecutive periods tile time with no gap and no
  overlap.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DAY",
    "HOUR",
    "MONTH",
    "WEEK",
    "YEAR",
    "EXPIRATION_DURATIONS",
    "Interval",
    "add_interval",
    "boundaries",
    "boundary",
    "ensure_aware",
    "expiration_at",
    "get_tz",
    "is_boundary",
    "iter_boundaries",
    "local_date",
    "parse_date_or_datetime",
    "parse_datetime",
    "parse_interval",
    "period_containing",
    "period_index",
    "segments",
    "start_of_day",
]

_SECONDS_PER_DAY = 86_400
_MIN_INTERVAL_SECONDS = 3_600
# Mean Gregorian month (365.2425 days / 12) in seconds: used only to *estimate* period indexes.
_AVG_MONTH_SECONDS = 2_629_746
# Longest accepted interval: 1000 mean Gregorian years.
_MAX_INTERVAL_SECONDS = 1000 * 12 * _AVG_MONTH_SECONDS


# --------------------------------------------------------------------------------------------
# Time zones and aware datetimes
# --------------------------------------------------------------------------------------------


def get_tz(tz: tzinfo | str | None) -> tzinfo:
    """Return a tzinfo for an IANA name (``"Europe/Berlin"``), a tzinfo, or ``None`` (UTC)."""
    if tz is None:
        return UTC
    if isinstance(tz, tzinfo):
        return tz
    if isinstance(tz, str):
        if tz.upper() == "UTC":
            return UTC
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {tz!r}") from exc
    raise TypeError(f"time zone must be a str or tzinfo, not {type(tz).__name__}")


def ensure_aware(value: datetime, name: str = "datetime") -> datetime:
    """Return ``value`` converted to aware UTC; raise for naive or non-datetime values."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (naive datetimes are rejected)")
    return value.astimezone(UTC)


def _localize(naive: datetime, tz: tzinfo, fold: int = 0) -> datetime:
    """Attach ``tz`` to a naive wall-clock time; non-existent times move forward past the gap."""
    candidate = naive.replace(tzinfo=tz, fold=fold)
    round_trip = candidate.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if round_trip != naive:
        # In a gap: fold=0 interprets the time with the offset *before* the transition, which
        # lands after the gap by exactly the gap's length.
        candidate = naive.replace(tzinfo=tz, fold=0)
    return candidate.astimezone(UTC)


def start_of_day(d: date, tz: tzinfo | str | None = "UTC") -> datetime:
    """First instant of calendar day ``d`` in ``tz``, as aware UTC.

    When midnight does not exist (DST change at 00:00) this is the first instant after the gap.
    """
    if isinstance(d, datetime) or not isinstance(d, date):
        raise TypeError(f"start_of_day needs a date, not {type(d).__name__}")
    return _localize(datetime(d.year, d.month, d.day), get_tz(tz), fold=0)


def local_date(t: datetime, tz: tzinfo | str | None = "UTC") -> date:
    """The calendar date of instant ``t`` in ``tz``."""
    return ensure_aware(t, "t").astimezone(get_tz(tz)).date()


_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_datetime(value: str | datetime) -> datetime:
    """Parse an RFC 3339 timestamp with an offset (``Z`` or ``+HH:MM``) into aware UTC.

    Naive timestamps, dates without a time, and timestamps without seconds are rejected with
    ``ValueError``. Fractional seconds beyond microseconds are truncated. An aware ``datetime``
    is accepted as is (converted to UTC).
    """
    if isinstance(value, datetime):
        return ensure_aware(value, "timestamp")
    if not isinstance(value, str):
        raise TypeError(f"timestamp must be a string, not {type(value).__name__}")
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?", value):
            raise ValueError(f"timestamp {value!r} has no UTC offset (naive timestamps rejected)")
        raise ValueError(f"invalid RFC 3339 timestamp {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    fraction = match.group(7) or ""
    microsecond = int((fraction + "000000")[:6])
    if match.group(8):
        offset = timedelta(0)
    else:
        off_h, off_m = int(match.group(10)), int(match.group(11))
        if off_h > 23 or off_m > 59:
            raise ValueError(f"invalid UTC offset in timestamp {value!r}")
        offset = timedelta(hours=off_h, minutes=off_m)
        if match.group(9) == "-":
            offset = -offset
    try:
        naive = datetime(year, month, day, hour, minute, second, microsecond)
        return (naive - offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"invalid RFC 3339 timestamp {value!r}: {exc}") from exc


def parse_date_or_datetime(
    value: str | date | datetime, tz: tzinfo | str | None = "UTC"
) -> datetime:
    """Parse ``YYYY-MM-DD`` (start of that day in ``tz``) or an RFC 3339 timestamp with an offset.

    Also accepts a ``date`` (start of that day in ``tz``) or an aware ``datetime``. Returns aware
    UTC; raises ``ValueError`` for naive timestamps and malformed input.
    """
    if isinstance(value, datetime):
        return ensure_aware(value, "timestamp")
    if isinstance(value, date):
        return start_of_day(value, tz)
    if not isinstance(value, str):
        raise TypeError(f"expected a date or timestamp string, not {type(value).__name__}")
    match = _DATE_RE.fullmatch(value)
    if match is not None:
        try:
            d = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError as exc:
            raise ValueError(f"invalid date {value!r}: {exc}") from exc
        return start_of_day(d, tz)
    return parse_datetime(value)


# --------------------------------------------------------------------------------------------
# Intervals
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interval:
    """A non-negative calendar interval: ``months`` + ``days`` (wall clock) + exact ``seconds``.

    Construct with :func:`parse_interval` or directly (validated the same way). ``str()`` gives
    the canonical ISO 8601 form (``P1M``, ``P1Y``, ``P1W``, ``P1DT12H``, ``PT1H``); equal
    intervals have equal strings, and ``parse_interval(str(iv)) == iv``.
    """

    months: int = 0
    days: int = 0
    seconds: int = 0

    def __post_init__(self) -> None:
        for field in ("months", "days", "seconds"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Interval.{field} must be an int")
            if value < 0:
                raise ValueError("intervals must not be negative")
        if self.months == 0 and self.days == 0 and self.seconds < _MIN_INTERVAL_SECONDS:
            raise ValueError("interval must be at least 1 hour")
        if self.approx_seconds > _MAX_INTERVAL_SECONDS:
            raise ValueError("interval must not be longer than 1000 years")

    @property
    def approx_seconds(self) -> int:
        """Length in seconds with mean Gregorian months; for estimates only, never for bounds."""
        return self.months * _AVG_MONTH_SECONDS + self.days * _SECONDS_PER_DAY + self.seconds

    @property
    def is_calendar(self) -> bool:
        """True when the length depends on the calendar/time zone (months or days present)."""
        return bool(self.months or self.days)

    @property
    def name(self) -> str | None:
        """``"day"``, ``"week"``, ``"month"`` or ``"year"`` for those exact intervals, else None."""
        return _NAMES_BY_INTERVAL.get((self.months, self.days, self.seconds))

    def __str__(self) -> str:
        if self.months == 0 and self.seconds == 0 and self.days % 7 == 0:
            return f"P{self.days // 7}W"
        years, months = divmod(self.months, 12)
        out = "P"
        if years:
            out += f"{years}Y"
        if months:
            out += f"{months}M"
        if self.days:
            out += f"{self.days}D"
        if self.seconds:
            hours, rest = divmod(self.seconds, 3600)
            minutes, seconds = divmod(rest, 60)
            out += "T"
            if hours:
                out += f"{hours}H"
            if minutes:
                out += f"{minutes}M"
            if seconds:
                out += f"{seconds}S"
        return out


HOUR = Interval(seconds=3600)
DAY = Interval(days=1)
WEEK = Interval(days=7)
MONTH = Interval(months=1)
YEAR = Interval(months=12)

_INTERVALS_BY_NAME = {"day": DAY, "week": WEEK, "month": MONTH, "year": YEAR}
_NAMES_BY_INTERVAL = {(iv.months, iv.days, iv.seconds): n for n, iv in _INTERVALS_BY_NAME.items()}

_NUM = r"(\d+)"
_FRAC = r"(\d+(?:[.,]\d+)?)"
_ISO_DURATION_RE = re.compile(
    rf"P(?!$)(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?"
    rf"(?:T(?=\d)(?:{_FRAC}H)?(?:{_FRAC}M)?(?:{_FRAC}S)?)?"
)


def parse_interval(value: str | Interval) -> Interval:
    """Parse ``day|week|month|year`` (case-insensitive) or an ISO 8601 duration.

    ISO form: ``P[nY][nM][nW][nD][T[nH][nM][nS]]``; only the hour/minute/second parts may carry a
    decimal fraction (``PT1.5H``), and only on the last part given; the time part must come to a
    whole number of seconds. Raises ``ValueError`` for garbage, negative or zero durations,
    durations shorter than 1 hour (``PT30M``) and durations longer than 1000 years. An
    :class:`Interval` is returned unchanged.
    """
    if isinstance(value, Interval):
        return value
    if not isinstance(value, str):
        raise TypeError(f"interval must be a string, not {type(value).__name__}")
    named = _INTERVALS_BY_NAME.get(value.lower())
    if named is not None:
        return named
    if value.startswith("-"):
        raise ValueError(f"invalid interval {value!r}: negative intervals are not allowed")
    match = _ISO_DURATION_RE.fullmatch(value.upper())
    if match is None:
        raise ValueError(
            f"invalid interval {value!r}: expected day, week, month, year or an ISO 8601 "
            "duration such as PT1H, P1D, P2W, P1M, P1Y or P1DT12H"
        )
    years, months, weeks, days = (int(g) if g else 0 for g in match.group(1, 2, 3, 4))
    time_parts = match.group(5, 6, 7)
    present = [p for p in time_parts if p is not None]
    if any(("." in p or "," in p) for p in present[:-1]):
        raise ValueError(
            f"invalid interval {value!r}: only the last component may have a decimal fraction"
        )
    try:
        seconds_dec = sum(
            (
                Decimal(p.replace(",", ".")) * factor
                for p, factor in zip(time_parts, (3600, 60, 1), strict=True)
                if p is not None
            ),
            Decimal(0),
        )
    except InvalidOperation as exc:  # pragma: no cover - the regex only lets digits through
        raise ValueError(f"invalid interval {value!r}") from exc
    if seconds_dec != seconds_dec.to_integral_value():
        raise ValueError(f"invalid interval {value!r}: must be a whole number of seconds")
    total_months = years * 12 + months
    total_days = weeks * 7 + days
    seconds = int(seconds_dec)
    if total_months == 0 and total_days == 0 and seconds == 0:
        raise ValueError(f"invalid interval {value!r}: the duration must not be zero")
    if total_months == 0 and total_days == 0 and seconds < _MIN_INTERVAL_SECONDS:
        raise ValueError(f"invalid interval {value!r}: must be at least 1 hour")
    try:
        return Interval(months=total_months, days=total_days, seconds=seconds)
    except ValueError as exc:
        raise ValueError(f"invalid interval {value!r}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Calendar addition and periodic schedules
# --------------------------------------------------------------------------------------------


def _add_months(naive: datetime, months: int) -> datetime:
    index = naive.year * 12 + (naive.month - 1) + months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    if not 1 <= year <= 9999:
        raise OverflowError("date out of range")
    day = min(naive.day, calendar.monthrange(year, month)[1])
    return naive.replace(year=year, month=month, day=day)


def _add_local(local: datetime, interval: Interval, n: int, tz: tzinfo) -> datetime:
    """``local`` is an aware datetime already expressed in ``tz``."""
    try:
        if n == 0:
            return local.astimezone(UTC)
        if interval.is_calendar:
            naive = local.replace(tzinfo=None, fold=0)
            if interval.months:
                naive = _add_months(naive, interval.months * n)
            if interval.days:
                naive = naive + timedelta(days=interval.days * n)
            result = _localize(naive, tz, fold=local.fold)
        else:
            result = local.astimezone(UTC)
        if interval.seconds:
            result = result + timedelta(seconds=interval.seconds * n)
        return result
    except OverflowError as exc:
        raise ValueError("date out of the supported range (years 1-9999)") from exc


def add_interval(
    t: datetime, interval: Interval | str, n: int = 1, tz: tzinfo | str | None = "UTC"
) -> datetime:
    """``t`` plus ``n`` times ``interval`` (``n`` may be negative or zero), computed in ``tz``.

    Months keep the wall-clock time and ``t``'s day of month (clamped to the end of shorter
    months); days keep the wall-clock time across DST; seconds are exact elapsed time. The whole
    ``n * interval`` is applied in one step (not ``n`` repeated additions). Returns aware UTC.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("n must be an int")
    interval = parse_interval(interval)
    zone = get_tz(tz)
    local = ensure_aware(t, "t").astimezone(zone)
    return _add_local(local, interval, n, zone)


class _Schedule:
    """Boundaries ``anchor + k * interval`` for integer k, each computed from the anchor."""

    __slots__ = ("anchor", "interval", "local_anchor", "tz")

    def __init__(self, anchor: datetime, interval: Interval | str, tz: tzinfo | str | None):
        self.interval = parse_interval(interval)
        self.tz = get_tz(tz)
        self.anchor = ensure_aware(anchor, "anchor")
        self.local_anchor = self.anchor.astimezone(self.tz)

    def at(self, k: int) -> datetime:
        return _add_local(self.local_anchor, self.interval, k, self.tz)

    def index(self, t: datetime) -> int:
        """The k with ``at(k) <= t < at(k + 1)``."""
        delta = t - self.anchor
        delta_us = (delta.days * _SECONDS_PER_DAY + delta.seconds) * 1_000_000 + delta.microseconds
        k = delta_us // (self.interval.approx_seconds * 1_000_000)
        # The estimate is off by at most a couple of periods (month lengths, DST); adjust.
        while self.at(k) > t:
            k -= 1
        while self.at(k + 1) <= t:
            k += 1
        return k


def boundary(
    anchor: datetime, interval: Interval | str, k: int, tz: tzinfo | str | None = "UTC"
) -> datetime:
    """The k-th boundary of the schedule: ``add_interval(anchor, interval, k, tz)``."""
    return add_interval(anchor, interval, k, tz)


def period_index(
    anchor: datetime, interval: Interval | str, t: datetime, tz: tzinfo | str | None = "UTC"
) -> int:
    """The integer k such that boundary k <= t < boundary k+1 (negative when t < anchor)."""
    return _Schedule(anchor, interval, tz).index(ensure_aware(t, "t"))


def period_containing(
    anchor: datetime, interval: Interval | str, t: datetime, tz: tzinfo | str | None = "UTC"
) -> tuple[datetime, datetime]:
    """The half-open period ``[start, end)`` of the schedule that contains ``t``.

    Periods are ``[boundary(k), boundary(k + 1))``; ``t`` may be before the anchor. Runs in
    constant time however far ``t`` is from the anchor.
    """
    schedule = _Schedule(anchor, interval, tz)
    k = schedule.index(ensure_aware(t, "t"))
    return schedule.at(k), schedule.at(k + 1)


def is_boundary(
    anchor: datetime, interval: Interval | str, t: datetime, tz: tzinfo | str | None = "UTC"
) -> bool:
    """True when ``t`` is exactly a period boundary (a period starts at ``t``)."""
    schedule = _Schedule(anchor, interval, tz)
    t = ensure_aware(t, "t")
    return schedule.at(schedule.index(t)) == t


def iter_boundaries(
    anchor: datetime,
    interval: Interval | str,
    start: datetime,
    end: datetime,
    tz: tzinfo | str | None = "UTC",
) -> Iterator[datetime]:
    """Yield, in order, every boundary b with ``start < b < end`` (both ends exclusive)."""
    schedule = _Schedule(anchor, interval, tz)
    start = ensure_aware(start, "start")
    end = ensure_aware(end, "end")
    if end <= start:
        return
    k = schedule.index(start) + 1
    previous = start
    while True:
        b = schedule.at(k)
        if b >= end:
            return
        if b > previous:  # a wall-clock day skipped entirely (Samoa, 2011) repeats a boundary
            yield b
            previous = b
        k += 1


def boundaries(
    anchor: datetime,
    interval: Interval | str,
    start: datetime,
    end: datetime,
    tz: tzinfo | str | None = "UTC",
) -> list[datetime]:
    """Every boundary b with ``start < b < end`` (both ends exclusive), in order.

    Use :func:`is_boundary` to learn whether ``start`` itself is a boundary.
    """
    return list(iter_boundaries(anchor, interval, start, end, tz))


def segments(
    anchor: datetime,
    interval: Interval | str,
    start: datetime,
    end: datetime,
    tz: tzinfo | str | None = "UTC",
) -> list[tuple[datetime, datetime]]:
    """Split ``[start, end)`` at the schedule's boundaries into half-open pieces, in order.

    The first piece starts at ``start`` and the last ends at ``end``; empty when end <= start.
    """
    start = ensure_aware(start, "start")
    end = ensure_aware(end, "end")
    if end <= start:
        return []
    cuts = [start, *iter_boundaries(anchor, interval, start, end, tz), end]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


# --------------------------------------------------------------------------------------------
# Grant expiration
# --------------------------------------------------------------------------------------------

EXPIRATION_DURATIONS: dict[str, Interval] = {"hour": HOUR, **_INTERVALS_BY_NAME}


def expiration_at(
    effective_at: datetime, duration: str, count: int, tz: tzinfo | str | None = "UTC"
) -> datetime:
    """When a grant effective at ``effective_at`` expires: ``count`` x ``duration`` later.

    ``duration`` is ``hour|day|week|month|year`` (case-insensitive); ``count`` an int >= 1.
    Hours are exact elapsed time; days/weeks keep the wall clock in ``tz``; months/years keep
    the wall clock and day of month (clamped to the month's end). Returns aware UTC.
    """
    if not isinstance(duration, str) or duration.lower() not in EXPIRATION_DURATIONS:
        raise ValueError(
            f"invalid expiration duration {duration!r}: expected hour, day, week, month or year"
        )
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError("expiration count must be an int")
    if count < 1:
        raise ValueError("expiration count must be at least 1")
    return add_interval(effective_at, EXPIRATION_DURATIONS[duration.lower()], count, tz)
