from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_project.errors import InvalidInput
from entitlements import selectors
from tests.entitlements.test_services_value import FEB, T0, Case, G, R, at, build, sum_meter

D = Decimal
pytestmark = pytest.mark.django_db

EVENTS = [(at(hours=h, minutes=30), 10) for h in range(0, 72, 5)]


def _case(**kw):
    return Case("h", [G("g1", "100", 1), G("g2", "100", 2, effective_at=at(days=1))], EVENTS,
                at(days=3), "0", "0", **kw)


def test_windows_match_point_in_time_values():
    entitlement, names = build(_case())
    usage = sum_meter(EVENTS)
    history = selectors.entitlement_history(entitlement=entitlement, start=T0, end=at(days=3),
                                            window_size="day", usage_total=usage,
                                            additive=True, now=at(days=3))
    windows = history["windowed_history"]
    assert [w["period"]["from"] for w in windows] == [T0, at(days=1), at(days=2)]
    assert sum(w["usage"] for w in windows) == sum(D(a) for _, a in EVENTS)
    for w in windows:
        value = selectors.entitlement_value(entitlement=entitlement, at=w["period"]["from"],
                                            usage_total=usage, additive=True)
        assert w["balance_at_start"] == value.balance
        assert w["overage_at_start"] == value.overage
    assert windows[0]["balance_at_start"] == D(100)
    # day 1 opens g2 (100) after 50 used from g1 (hours 0, 5, 10, 15, 20)
    assert windows[1]["balance_at_start"] == D(150)


def test_burndown_segments_split_at_transitions_only():
    entitlement, names = build(_case())
    usage = sum_meter(EVENTS)
    history = selectors.entitlement_history(entitlement=entitlement, start=T0, end=at(days=3),
                                            window_size="hour", usage_total=usage,
                                            additive=True, now=at(days=3))
    burndown = history["burndown_history"]
    assert [(s["period"]["from"], s["period"]["to"]) for s in burndown] == [
        (T0, at(days=1)), (at(days=1), at(days=3))]
    first, second = burndown
    assert (first["usage"], first["balance_at_start"], first["balance_at_end"]) == (
        D(50), D(100), D(50))
    assert first["grant_usages"] == [{"grant_id": names["g1"].id, "usage": D(50)}]
    usages = {u["grant_id"]: u["usage"] for u in second["grant_usages"]}
    assert usages == {names["g1"].id: D(50), names["g2"].id: D(50)}
    assert second["overage"] == D(0) and second["balance_at_end"] == D(50)
    assert len(history["windowed_history"]) == 72


def test_history_across_a_reset_and_time_zone_windows():
    case = Case("h", [G("g", "100")], [(at(days=30, hours=23), 5), (at(hours=1, base=FEB), 7)],
                at(days=2, base=FEB), "0", "0", resets=[])
    entitlement, _ = build(case)
    usage = sum_meter(case.events)
    history = selectors.entitlement_history(
        entitlement=entitlement, start=at(days=30), end=at(days=1, base=FEB), window_size="day",
        window_time_zone="America/New_York", usage_total=usage, additive=True,
        now=at(days=2, base=FEB))
    windows = history["windowed_history"]
    # New York midnights are 05:00 UTC in winter
    assert [w["period"]["from"] for w in windows] == [
        at(days=30), datetime(2025, 1, 31, 5, tzinfo=UTC), datetime(2025, 2, 1, 5, tzinfo=UTC)]
    assert [w["usage"] for w in windows] == [D(0), D(12), D(0)]
    burndown = history["burndown_history"]
    assert [s["period"]["from"] for s in burndown] == [at(days=30), FEB]  # the reset
    assert burndown[1]["balance_at_start"] == D(95)


def test_history_bad_input():
    entitlement, _ = build(_case())
    with pytest.raises(InvalidInput) as exc:
        selectors.entitlement_history(entitlement=entitlement, start=at(days=2), end=at(days=1),
                                      usage_total=sum_meter([]), additive=True, now=at(days=3))
    assert exc.value.code == "invalid_range"
    with pytest.raises(InvalidInput) as exc:
        selectors.entitlement_history(entitlement=entitlement, start=T0, end=at(days=1),
                                      window_size="minute", usage_total=sum_meter([]),
                                      additive=True, now=at(days=3))
    assert exc.value.code == "invalid_window_size"
    with pytest.raises(InvalidInput) as exc:
        selectors.entitlement_history(entitlement=entitlement, start=T0,
                                      end=T0 + timedelta(days=200), window_size="hour",
                                      usage_total=sum_meter([]), additive=True,
                                      now=at(days=3))
    assert exc.value.code == "too_many_windows"
    with pytest.raises(InvalidInput) as exc:
        selectors.entitlement_history(entitlement=entitlement, start=T0, end=at(days=1),
                                      window_time_zone="Mars/Olympus",
                                      usage_total=sum_meter([]), additive=True, now=at(days=3))
    assert exc.value.code == "invalid_timezone"


def test_manual_reset_recorded_in_history():
    case = Case("h", [G("g", "100", max_rollover="30")], [(at(hours=1), 40), (at(days=2), 5)],
                at(days=3), "0", "0", resets=[R(at(days=1))])
    entitlement, _ = build(case)
    history = selectors.entitlement_history(entitlement=entitlement, start=T0, end=at(days=3),
                                            usage_total=sum_meter(case.events),
                                            additive=True, now=at(days=3))
    burndown = history["burndown_history"]
    assert [s["period"]["from"] for s in burndown] == [T0, at(days=1)]
    assert burndown[1]["balance_at_start"] == D(30)
    assert burndown[1]["balance_at_end"] == D(25)
