"""Table-driven tests of the burn-down engine with exact numbers.

Times are offsets from the period start 2025-01-01T00:00Z; usage is a sum meter given as
point events ``(instant, amount[, usage class])``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest

from grants.engine import (
    ANY_USAGE,
    Grant,
    Reset,
    Snapshot,
    StaleSnapshotError,
    burn_order_key,
    run,
)

D = Decimal
T0 = datetime(2025, 1, 1, tzinfo=UTC)
END = T0 + timedelta(days=30)


def at(days: int = 0, hours: int = 0, minutes: int = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours, minutes=minutes)


def grant(grant_id: str, amount: str, **kwargs) -> Grant:
    kwargs.setdefault("effective_at", T0)
    kwargs.setdefault("created_at", kwargs["effective_at"])
    for name in ("cost_basis", "min_rollover", "max_rollover"):
        if isinstance(kwargs.get(name), str):
            kwargs[name] = D(kwargs[name])
    return Grant(id=grant_id, amount=D(amount), **kwargs)


def meter(events):
    """A sum meter over point events; classified if any event names a class."""
    classified = any(len(event) == 3 for event in events)

    def usage(start, end):
        totals: dict[str | None, Decimal] = {}
        for instant, amount, *rest in events:
            if start <= instant < end:
                usage_class = rest[0] if rest else None
                totals[usage_class] = totals.get(usage_class, D(0)) + D(amount)
        return totals if classified else totals.get(None, D(0))

    return usage


def decimals(mapping: dict[str, str]) -> dict[str, Decimal]:
    return {key: D(value) for key, value in mapping.items()}


@dataclass
class Case:
    name: str
    grants: list[Grant]
    events: list[tuple]
    balances: dict[str, str]
    overage: str = "0"
    usage: str | None = None
    burned: dict[str, str] | None = None
    resets: list[Reset] = field(default_factory=list)
    end: datetime = END
    period_usage: str | None = None


CASES = [
    Case(
        "lower_priority_number_burns_first",
        [grant("g1", "100", priority=1), grant("g2", "100", priority=2)],
        [(at(hours=1), "120")],
        balances={"g1": "0", "g2": "80"},
        usage="120",
        burned={"g1": "100", "g2": "20"},
    ),
    Case(
        "priority_zero_is_most_urgent",
        [grant("a", "50", priority=1), grant("b", "50", priority=0)],
        [(at(hours=1), "30")],
        balances={"a": "50", "b": "20"},
    ),
    Case(
        "void_is_not_retroactive_and_later_usage_is_overage",
        [grant("g", "100", voided_at=at(hours=1))],
        [(at(minutes=59), "50"), (at(minutes=61), "50")],
        balances={},
        overage="50",
        usage="100",
        burned={"g": "50"},
    ),
    Case(
        "void_keeps_usage_already_attributed",
        [grant("g", "100", voided_at=at(hours=2))],
        [(at(hours=1), "60")],
        balances={},
        burned={"g": "60"},
    ),
    Case(
        "rollover_capped_per_grant",
        [
            grant("g1", "1000", priority=1, max_rollover="1000"),
            grant("g2", "1000", priority=3, max_rollover="100"),
        ],
        [(at(days=1), "600")],
        resets=[Reset(at(days=15))],
        balances={"g1": "400", "g2": "100"},
        usage="600",
        period_usage="0",
    ),
    Case(
        "tie_on_priority_soonest_expiry_first_none_last",
        [
            grant("a", "10", expires_at=at(days=10)),
            grant("b", "10", expires_at=at(days=5)),
            grant("c", "10"),
        ],
        [(at(hours=1), "25")],
        end=at(days=2),
        balances={"a": "0", "b": "0", "c": "5"},
        burned={"b": "10", "a": "10", "c": "5"},
    ),
    Case(
        "tie_on_expiry_lower_cost_basis_first_none_as_zero",
        [
            grant("a", "10", cost_basis="0.5"),
            grant("b", "10"),
            grant("c", "10", cost_basis="0.2"),
        ],
        [(at(hours=1), "15")],
        balances={"a": "10", "b": "0", "c": "5"},
    ),
    Case(
        "none_cost_basis_ties_with_zero_then_created",
        [
            grant("a", "10", cost_basis="0", created_at=at(hours=2)),
            grant("b", "10", created_at=at(hours=1)),
        ],
        [(at(hours=3), "15")],
        balances={"a": "5", "b": "0"},
    ),
    Case(
        "tie_on_cost_basis_earliest_created_first",
        [grant("a", "10", created_at=at(hours=2)), grant("b", "10", created_at=at(hours=1))],
        [(at(hours=3), "4")],
        balances={"a": "10", "b": "6"},
    ),
    Case(
        "full_tie_lowest_id_first",
        [grant("b", "10"), grant("a", "10")],
        [(at(hours=1), "4")],
        balances={"a": "6", "b": "10"},
    ),
    Case(
        "priority_beats_expiry",
        [grant("a", "10", priority=2, expires_at=at(days=3)), grant("b", "10", priority=1)],
        [(at(hours=1), "4")],
        end=at(days=2),
        balances={"a": "10", "b": "6"},
    ),
    Case(
        "overage_paid_off_by_grant_starting_later_in_period",
        [grant("g1", "100"), grant("g2", "100", effective_at=at(days=2))],
        [(at(hours=1), "150")],
        balances={"g1": "0", "g2": "50"},
        usage="150",
        burned={"g1": "100"},
    ),
    Case(
        "later_grant_pays_overage_partly",
        [grant("g1", "100"), grant("g2", "30", effective_at=at(days=2))],
        [(at(hours=1), "150")],
        balances={"g1": "0", "g2": "0"},
        overage="20",
    ),
    Case(
        "overage_paid_off_by_recurrence_refill",
        [grant("g", "100", refills=(at(days=1),))],
        [(at(hours=1), "150")],
        end=at(days=2),
        balances={"g": "50"},
        burned={"g": "100"},
    ),
    Case(
        "refill_resets_to_amount_without_rollover",
        [grant("g", "100", refills=(at(days=1), at(days=2)))],
        [(at(hours=1), "30"), (at(days=1, hours=1), "10")],
        end=at(days=1, hours=12),
        balances={"g": "90"},
    ),
    Case(
        "refill_at_a_reset_wins_over_rollover_cap",
        [grant("g", "100", max_rollover="10", refills=(at(days=15),))],
        [(at(hours=1), "80")],
        resets=[Reset(at(days=15))],
        balances={"g": "100"},
    ),
    Case(
        "refill_after_void_is_ignored",
        [grant("g", "100", voided_at=at(days=1), refills=(at(days=2),))],
        [(at(hours=1), "30"), (at(days=3), "5")],
        balances={},
        overage="5",
    ),
    Case(
        "grant_expiring_exactly_at_reset_does_not_roll_over",
        [
            grant("g1", "100", expires_at=at(days=15), max_rollover="100"),
            grant("g2", "50", priority=2),
        ],
        [(at(hours=1), "30")],
        resets=[Reset(at(days=15))],
        balances={"g2": "50"},
        usage="30",
    ),
    Case(
        "grant_starting_exactly_at_reset_opens_with_full_amount",
        [grant("g0", "100"), grant("g1", "100", effective_at=at(days=15), max_rollover="10")],
        [(at(hours=1), "120")],
        resets=[Reset(at(days=15))],
        balances={"g0": "0", "g1": "100"},
    ),
    Case(
        "grant_starting_at_reset_pays_preserved_overage",
        [grant("g0", "100"), grant("g1", "100", effective_at=at(days=15), max_rollover="10")],
        [(at(hours=1), "120")],
        resets=[Reset(at(days=15), preserve_overage=True)],
        balances={"g0": "0", "g1": "80"},
    ),
    Case(
        "min_rollover_above_balance",
        [grant("g", "100", min_rollover="50")],
        [(at(hours=1), "80")],
        resets=[Reset(at(days=15))],
        balances={"g": "50"},
    ),
    Case(
        "max_rollover_below_balance",
        [grant("g", "100", max_rollover="30")],
        [(at(hours=1), "20")],
        resets=[Reset(at(days=15))],
        balances={"g": "30"},
    ),
    Case(
        "default_rollover_keeps_nothing_above_amount_and_at_least_zero",
        [grant("g", "100")],
        [(at(hours=1), "20"), (at(days=16), "5")],
        resets=[Reset(at(days=15))],
        balances={"g": "75"},
        period_usage="5",
    ),
    Case(
        "preserved_overage_partly_covered_by_rollover",
        [grant("g", "100", min_rollover="30")],
        [(at(hours=1), "150")],
        resets=[Reset(at(days=15), preserve_overage=True)],
        balances={"g": "0"},
        overage="20",
    ),
    Case(
        "overage_dropped_at_reset_without_preserve",
        [grant("g", "100", min_rollover="30")],
        [(at(hours=1), "150")],
        resets=[Reset(at(days=15))],
        balances={"g": "30"},
        overage="0",
    ),
    Case(
        "preserved_overage_rest_paid_by_later_grant",
        [grant("g", "100", min_rollover="30"), grant("g2", "50", effective_at=at(days=20))],
        [(at(hours=1), "150")],
        resets=[Reset(at(days=15), preserve_overage=True)],
        balances={"g": "0", "g2": "30"},
    ),
    Case(
        "preserved_overage_burns_opening_balances_in_burn_order",
        [
            grant("old", "100", priority=2, min_rollover="30"),
            grant("new", "100", priority=1, effective_at=at(days=15)),
        ],
        [(at(hours=1), "150")],
        resets=[Reset(at(days=15), preserve_overage=True)],
        balances={"old": "30", "new": "50"},
    ),
    Case(
        "credit_ledger_decrement_beyond_balance_is_debt",
        [grant("b1", "100")],
        [(at(hours=1), "150")],
        balances={"b1": "0"},
        overage="50",
    ),
    Case(
        "credit_ledger_increment_pays_debt_first",
        [grant("b1", "100"), grant("b2", "80", effective_at=at(hours=2))],
        [(at(hours=1), "150"), (at(hours=3), "10")],
        balances={"b1": "0", "b2": "20"},
        burned={"b1": "100", "b2": "10"},
    ),
    Case(
        "credit_ledger_debt_larger_than_increment",
        [grant("b1", "100"), grant("b2", "30", effective_at=at(hours=2))],
        [(at(hours=1), "150")],
        balances={"b1": "0", "b2": "0"},
        overage="20",
    ),
    Case(
        "same_instant_increments_pay_debt_in_burn_order",
        [
            grant("a", "100", priority=2, effective_at=at(hours=2)),
            grant("b", "100", priority=1, effective_at=at(hours=2)),
        ],
        [(at(hours=1), "150")],
        balances={"a": "50", "b": "0"},
    ),
    Case(
        "filtered_grant_untouched_by_unclassified_usage",
        [grant("f", "100", eligible=frozenset({"api"})), grant("u", "100", priority=2)],
        [(at(hours=1), "50")],
        balances={"f": "100", "u": "50"},
    ),
    Case(
        "classified_usage_burns_eligible_grants_only",
        [grant("f", "100", eligible=frozenset({"api"})), grant("u", "100", priority=2)],
        [(at(hours=1), "30", "api"), (at(hours=1), "30", "storage")],
        balances={"f": "70", "u": "70"},
    ),
    Case(
        "filtered_grant_exhausted_spills_to_unfiltered",
        [grant("f", "100", eligible=frozenset({"api"})), grant("u", "100", priority=2)],
        [(at(hours=1), "130", "api")],
        balances={"f": "0", "u": "70"},
    ),
    Case(
        "unclassified_usage_is_attributed_before_classified",
        [grant("u", "100"), grant("f", "100", priority=2, eligible=frozenset({"api"}))],
        [(at(hours=1), "80"), (at(hours=1), "50", "api")],
        balances={"u": "0", "f": "70"},
    ),
    Case(
        "any_usage_class_burns_filtered_grants_too",
        [grant("f", "100", eligible=frozenset({"api"})), grant("u", "100", priority=2)],
        [(at(hours=1), "130", ANY_USAGE)],
        balances={"f": "0", "u": "70"},
    ),
    Case(
        "any_usage_is_attributed_after_named_classes",
        [grant("f", "100", priority=2, eligible=frozenset({"api"})), grant("u", "100")],
        [(at(hours=1), "90", ANY_USAGE), (at(hours=1), "60", "storage")],
        balances={"f": "50", "u": "0"},
    ),
    Case(
        "no_eligible_grant_means_overage",
        [grant("f", "100", eligible=frozenset({"api"}))],
        [(at(hours=1), "40")],
        balances={"f": "100"},
        overage="40",
    ),
    Case(
        "expiry_drops_balance_and_later_usage_is_overage",
        [grant("g", "100", expires_at=at(hours=1))],
        [(T0, "30"), (at(hours=2), "30")],
        balances={},
        overage="30",
        burned={"g": "30"},
    ),
    Case(
        "usage_before_a_grant_is_paid_when_it_starts",
        [grant("g", "100", effective_at=at(hours=1))],
        [(at(minutes=30), "40")],
        balances={"g": "60"},
        burned={},
    ),
    Case(
        "exact_decimals_no_rounding",
        [grant("g", "0.3"), grant("h", "1", priority=2)],
        [(at(hours=1), "0.1"), (at(hours=2), "0.2"), (at(hours=3), "0.000000000001")],
        balances={"g": "0", "h": "0.999999999999"},
    ),
    Case(
        "grant_effective_exactly_at_end_counts",
        [grant("g", "100", effective_at=at(days=30))],
        [],
        balances={"g": "100"},
    ),
    Case(
        "grant_expiring_exactly_at_end_is_gone",
        [grant("g", "100", expires_at=at(days=30))],
        [],
        balances={},
    ),
    Case(
        "usage_at_end_is_outside_the_range",
        [grant("g", "100")],
        [(at(days=30), "10")],
        balances={"g": "100"},
        usage="0",
    ),
    Case(
        "voided_before_effective_is_never_active",
        [grant("g", "100", effective_at=at(days=2), voided_at=at(days=1))],
        [(at(days=3), "10")],
        balances={},
        overage="10",
    ),
    Case(
        "grant_effective_before_start_opens_with_full_amount",
        [grant("g", "100", effective_at=T0 - timedelta(days=3))],
        [(at(hours=1), "10")],
        balances={"g": "90"},
    ),
    Case(
        "usage_since_last_reset",
        [grant("g", "100")],
        [(at(hours=1), "10"), (at(days=2), "5")],
        resets=[Reset(at(days=1))],
        balances={"g": "85"},
        usage="15",
        period_usage="5",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_table(case: Case) -> None:
    result = run(
        grants=case.grants,
        start=T0,
        end=case.end,
        usage=meter(case.events),
        resets=case.resets,
    )
    assert result.balances == decimals(case.balances)
    assert result.balance == sum(decimals(case.balances).values(), D(0))
    assert result.overage == D(case.overage)
    if case.usage is not None:
        assert result.usage == D(case.usage)
    if case.burned is not None:
        assert result.grant_usages == decimals(case.burned)
    if case.period_usage is not None:
        assert result.period_usage == D(case.period_usage)


def test_table_has_enough_rows() -> None:
    assert len(CASES) >= 25


def test_burn_order_key_sorts_priority_expiry_cost_created_id() -> None:
    grants = [
        grant("z", "1", priority=2),
        grant("y", "1", expires_at=at(days=9)),
        grant("x", "1"),
        grant("w", "1", cost_basis="1"),
        grant("v", "1", created_at=at(hours=1)),
        grant("u", "1", expires_at=at(days=1)),
        grant("t", "1", expires_at=at(days=9), cost_basis="2"),
    ]
    ordered = [g.id for g in sorted(grants, key=burn_order_key)]
    assert ordered == ["u", "y", "t", "x", "v", "w", "z"]


def test_segments_split_at_void_and_record_overage() -> None:
    result = run(
        grants=[grant("g", "100", voided_at=at(hours=1))],
        start=T0,
        end=at(hours=2),
        usage=meter([(at(minutes=59), "50"), (at(minutes=61), "50")]),
    )
    first, second = result.segments
    assert (first.start, first.end, second.start, second.end) == (
        T0,
        at(hours=1),
        at(hours=1),
        at(hours=2),
    )
    assert first.usage == D(50) and first.overage == D(0)
    assert first.balance_at_start == {"g": D(100)} and first.balance_at_end == {"g": D(50)}
    assert first.grant_usages == {"g": D(50)}
    assert second.balance_at_start == {} and second.grant_usages == {}
    assert second.usage == D(50) and second.overage == D(50)
    assert (second.overage_at_start, second.overage_at_end) == (D(0), D(50))
    void = result.transitions[-1]
    assert void.at == at(hours=1) and void.voided == {"g": D(50)} and void.expired == {}


def test_classes_are_attributed_in_name_order_within_a_segment() -> None:
    result = run(
        grants=[grant("u", "100")],
        start=T0,
        end=at(hours=2),
        usage=meter([(at(hours=1), "70", "storage"), (at(hours=1), "70", "api")]),
    )
    (segment,) = result.segments
    assert segment.grant_usages_by_class == {"api": {"u": D(70)}, "storage": {"u": D(30)}}
    assert segment.usage_by_class == {"api": D(70), "storage": D(70)}
    assert segment.overage == D(40) and segment.grant_usages == {"u": D(100)}


def test_void_records_remaining_balance_not_usage() -> None:
    result = run(
        grants=[grant("g", "100", voided_at=at(hours=2))],
        start=T0,
        end=at(hours=3),
        usage=meter([(at(hours=1), "60")]),
    )
    opening, void = result.transitions
    assert opening.activated == {"g": D(100)}
    assert void.voided == {"g": D(40)}
    assert result.grant_usages == {"g": D(60)}
    assert result.balance == D(0)


def test_expiry_on_same_instant_as_void_counts_as_expiry() -> None:
    result = run(
        grants=[grant("g", "100", voided_at=at(hours=2), expires_at=at(hours=2))],
        start=T0,
        end=at(hours=3),
        usage=meter([]),
    )
    assert result.transitions[-1].expired == {"g": D(100)}
    assert result.transitions[-1].voided == {}


def test_transition_records_reset_rollover_refill_and_payoff() -> None:
    reset_at = at(days=15)
    result = run(
        grants=[
            grant("keep", "100", min_rollover="30", priority=2),
            grant("rec", "40", refills=(reset_at,)),
            grant("new", "10", effective_at=reset_at, priority=3),
        ],
        start=T0,
        end=at(days=16),
        usage=meter([(at(hours=1), "200")]),
        resets=[Reset(reset_at, preserve_overage=True)],
    )
    step = result.transitions[-1]
    assert step.at == reset_at
    assert step.balance_before == {"keep": D(0), "rec": D(0)}
    assert step.overage_before == D(60)
    assert step.rolled_over == {"keep": D(30), "rec": D(0)}
    assert step.refilled == {"rec": D(0)}
    assert step.activated == {"new": D(10)}
    assert step.overage_paid == {"rec": D(40), "keep": D(20)}
    assert step.overage_after == D(0) and step.overage_dropped == D(0)
    assert step.balance_after == {"keep": D(10), "rec": D(0), "new": D(10)}


def test_reset_without_preserve_records_dropped_overage() -> None:
    result = run(
        grants=[grant("g", "10")],
        start=T0,
        end=at(days=2),
        usage=meter([(at(hours=1), "25")]),
        resets=[Reset(at(days=1))],
    )
    step = result.transitions[-1]
    assert step.overage_dropped == D(15) and step.overage_after == D(0)
    assert result.period_start == at(days=1)


def test_usage_function_called_once_per_segment() -> None:
    calls = []

    def usage(start, end):
        calls.append((start, end))
        return D(0)

    run(
        grants=[
            grant("a", "1", effective_at=at(hours=1), expires_at=at(hours=5)),
            grant("b", "1", refills=(at(hours=2), at(hours=9))),
        ],
        start=T0,
        end=at(hours=8),
        usage=usage,
        resets=[Reset(at(hours=3)), Reset(at(hours=12))],
        boundaries=[at(hours=4), at(hours=20)],
    )
    cuts = [T0] + [at(hours=h) for h in (1, 2, 3, 4, 5)] + [at(hours=8)]
    assert calls == list(pairwise(cuts))


def test_zero_length_run_gives_state_at_start() -> None:
    result = run(
        grants=[grant("g", "100"), grant("later", "5", effective_at=at(hours=1))],
        start=T0,
        end=T0,
        usage=meter([]),
    )
    assert result.segments == [] and result.balances == {"g": D(100)}
    assert result.snapshot == Snapshot(at=T0, balances={"g": D(100)}, overage=D(0), period_start=T0)


def test_resume_from_snapshot_matches_single_run() -> None:
    grants = [
        grant("g1", "100", refills=(at(days=10),)),
        grant("g2", "50", priority=2, effective_at=at(days=3), max_rollover="20"),
    ]
    events = [(at(days=1), "120"), (at(days=4), "30"), (at(days=12), "70"), (at(days=20), "9")]
    resets = [Reset(at(days=15), preserve_overage=True)]
    whole = run(grants=grants, start=T0, end=at(days=30), usage=meter(events), resets=resets)
    for middle in (at(days=3), at(days=10), at(days=15), at(days=17)):
        first = run(grants=grants, start=T0, end=middle, usage=meter(events), resets=resets)
        second = run(
            grants=grants,
            start=middle,
            end=at(days=30),
            usage=meter(events),
            resets=resets,
            snapshot=first.snapshot,
        )
        assert second.balances == whole.balances
        assert second.overage == whole.overage
        assert second.period_usage == whole.period_usage
        assert first.transitions + second.transitions == whole.transitions
    assert whole.balances == {"g1": D(21), "g2": D(0)}


def test_snapshot_carries_usage_counter() -> None:
    grants = [grant("g", "100")]
    events = [(at(hours=1), "10"), (at(days=2), "7")]
    first = run(grants=grants, start=T0, end=at(days=3), usage=meter(events))
    assert first.snapshot.period_usage == D(17) and first.snapshot.period_start == T0
    second = run(
        grants=grants,
        start=at(days=3),
        end=at(days=4),
        usage=meter([(at(days=3, hours=1), "3")]),
        snapshot=first.snapshot,
    )
    assert second.usage == D(3) and second.period_usage == D(20)


def test_stale_snapshot_is_rejected() -> None:
    grants = [grant("g", "100"), grant("backdated", "5", effective_at=at(hours=1))]
    snapshot = Snapshot(at=at(hours=2), balances={"g": D(90)}, overage=D(0))
    with pytest.raises(StaleSnapshotError):
        run(grants=grants, start=at(hours=2), end=at(hours=3), usage=meter([]), snapshot=snapshot)


def test_snapshot_must_be_at_start() -> None:
    snapshot = Snapshot(at=at(hours=2), balances={"g": D(90)}, overage=D(0))
    with pytest.raises(ValueError, match="snapshot"):
        run(
            grants=[grant("g", "100")],
            start=T0,
            end=at(hours=3),
            usage=meter([]),
            snapshot=snapshot,
        )


@pytest.mark.parametrize(
    ("value", "error"),
    [(D(-1), ValueError), (1.5, TypeError), (D("NaN"), ValueError), ({"api": D(-2)}, ValueError)],
)
def test_invalid_usage_is_rejected(value, error) -> None:
    with pytest.raises(error):
        run(grants=[grant("g", "1")], start=T0, end=at(hours=1), usage=lambda s, e: value)


def test_integer_usage_is_accepted_as_decimal() -> None:
    result = run(grants=[grant("g", "10")], start=T0, end=at(hours=1), usage=lambda s, e: 3)
    assert result.balances == {"g": D(7)}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"amount": D(0)},
        {"amount": D(-5)},
        {"min_rollover": D(-1)},
        {"effective_at": datetime(2025, 1, 1)},
        {"expires_at": datetime(2025, 1, 2)},
    ],
)
def test_invalid_grant_is_rejected(kwargs) -> None:
    fields = {"id": "g", "amount": D(1), "effective_at": T0, "created_at": T0} | kwargs
    with pytest.raises(ValueError):
        Grant(**fields)


def test_float_amount_is_rejected() -> None:
    with pytest.raises(TypeError):
        Grant(id="g", amount=1.0, effective_at=T0, created_at=T0)


def test_duplicate_ids_and_resets_and_reversed_range_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        run(grants=[grant("g", "1"), grant("g", "2")], start=T0, end=at(hours=1), usage=meter([]))
    with pytest.raises(ValueError, match="two resets"):
        run(
            grants=[],
            start=T0,
            end=at(hours=1),
            usage=meter([]),
            resets=[Reset(at(minutes=5)), Reset(at(minutes=5), preserve_overage=True)],
        )
    with pytest.raises(ValueError, match="before start"):
        run(grants=[], start=at(hours=1), end=T0, usage=meter([]))
    with pytest.raises(ValueError, match="aware"):
        run(grants=[], start=datetime(2025, 1, 1), end=at(hours=1), usage=meter([]))


def test_usage_between_sums_segments_inside_the_window() -> None:
    result = run(
        grants=[grant("g", "100")],
        start=T0,
        end=at(days=3),
        usage=meter([(at(hours=1), "4"), (at(days=1, hours=1), "6"), (at(days=2, hours=1), "9")]),
        boundaries=[at(days=1), at(days=2)],
    )
    assert result.usage_between(at(days=1), at(days=3)) == D(15)
    assert result.usage_between(T0, at(days=1)) == D(4)
    assert result.usage_since_reset == result.period_usage == D(19)
