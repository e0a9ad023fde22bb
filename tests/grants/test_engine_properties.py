"""Hypothesis properties of the burn-down engine.

Every instant is a whole minute after 2025-01-01T00:00Z, so a minute-by-minute reference model
sees every boundary. Usage is a sum over point events, hence additive.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from grants.engine import ANY_USAGE, Grant, Reset, burn_order_key, run

ZERO = Decimal(0)
T0 = datetime(2025, 1, 1, tzinfo=UTC)
HORIZON = 240
CLASSES = ("api", "storage")


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


money = st.integers(0, 20_000).map(lambda n: Decimal(n).scaleb(-2))
positive_money = st.integers(1, 20_000).map(lambda n: Decimal(n).scaleb(-2))
instant = st.integers(-30, HORIZON + 30).map(minute)
maybe_instant = st.none() | instant


@st.composite
def grant_lists(draw, *, classified: bool) -> list[Grant]:
    count = draw(st.integers(0, 5))
    grants = []
    for index in range(count):
        amount = draw(positive_money)
        eligible = None
        if classified:
            eligible = draw(st.none() | st.frozensets(st.sampled_from(CLASSES), max_size=2))
        grants.append(
            Grant(
                id=f"g{index}",
                amount=amount,
                effective_at=draw(instant),
                created_at=draw(st.integers(0, 3).map(minute)),
                priority=draw(st.integers(0, 2)),
                expires_at=draw(maybe_instant),
                voided_at=draw(st.none() | instant),
                cost_basis=draw(st.none() | st.sampled_from([ZERO, Decimal("0.5"), Decimal(1)])),
                min_rollover=draw(st.just(ZERO) | money),
                max_rollover=draw(st.none() | money),
                refills=tuple(draw(st.lists(instant, max_size=3))),
                eligible=eligible,
            )
        )
    return grants


resets_strategy = st.dictionaries(
    st.integers(0, HORIZON).map(minute), st.booleans(), max_size=3
).map(lambda found: [Reset(at, preserve) for at, preserve in sorted(found.items())])


def event_lists(*, classified: bool):
    usage_class = st.sampled_from((None, *CLASSES, ANY_USAGE)) if classified else st.none()
    return st.lists(st.tuples(st.integers(0, HORIZON).map(minute), money, usage_class))


def meter(events):
    def usage(start, end):
        totals: dict[str | None, Decimal] = {}
        for at, amount, usage_class in events:
            if start <= at < end:
                totals[usage_class] = totals.get(usage_class, ZERO) + amount
        return totals

    return usage


def reference(grants, resets, events, end_minute):
    """Minute-by-minute model of the rules in the engine's module docstring."""
    order = sorted(grants, key=burn_order_key)
    by_reset = {reset.at: reset for reset in resets}
    balances: dict[str, Decimal] = {}
    overage = ZERO
    for step in range(end_minute + 1):
        t = minute(step)
        for grant in order:
            if grant.id in balances and not grant.is_active_at(t):
                del balances[grant.id]
        reset = by_reset.get(t)
        if reset is not None:
            for grant in order:
                if grant.id in balances:
                    balances[grant.id] = grant.rollover(balances[grant.id])
            if not reset.preserve_overage:
                overage = ZERO
        fresh = set()
        for grant in order:
            if grant.id in balances and t in grant.refills:
                balances[grant.id] = grant.amount
                fresh.add(grant.id)
            opens = grant.effective_at == t or (step == 0 and grant.effective_at < t)
            if opens and grant.is_active_at(t) and grant.id not in balances:
                balances[grant.id] = grant.amount
                fresh.add(grant.id)
        preserve = reset is not None and reset.preserve_overage
        for grant in order:
            if grant.id in balances and (preserve or grant.id in fresh):
                paid = min(balances[grant.id], overage)
                balances[grant.id] -= paid
                overage -= paid
        if step == end_minute:
            break
        for usage_class in (None, *CLASSES, ANY_USAGE):
            remaining = sum((a for at, a, c in events if at == t and c == usage_class), ZERO)
            for grant in order:
                if grant.id in balances and grant.covers(usage_class):
                    take = min(balances[grant.id], remaining)
                    balances[grant.id] -= take
                    remaining -= take
            overage += remaining
    return balances, overage


def assert_segments_consistent(result, grants):
    by_id = {grant.id: grant for grant in grants}
    transitions = {step.at: step for step in result.transitions}
    for index, segment in enumerate(result.segments):
        assert sum(segment.grant_usages.values(), ZERO) + segment.overage == segment.usage
        assert sum(segment.usage_by_class.values(), ZERO) == segment.usage
        for grant_id, start_balance in segment.balance_at_start.items():
            burned = segment.grant_usages.get(grant_id, ZERO)
            assert segment.balance_at_end[grant_id] == start_balance - burned
        assert segment.overage_at_end == segment.overage_at_start + segment.overage
        for balances in (segment.balance_at_start, segment.balance_at_end):
            assert all(balance >= 0 for balance in balances.values())
        assert segment.overage_at_start >= 0
        for usage_class, burned in segment.grant_usages_by_class.items():
            for grant_id in burned:
                assert by_id[grant_id].covers(usage_class)
                for earlier in segment.balance_at_end:
                    if by_id[earlier].covers(usage_class) and (
                        burn_order_key(by_id[earlier]) < burn_order_key(by_id[grant_id])
                    ):
                        assert segment.balance_at_end[earlier] == 0
        following = (
            result.segments[index + 1].balance_at_start
            if index + 1 < len(result.segments)
            else result.balances
        )
        step = transitions.get(segment.end)
        if step is None:
            assert following == segment.balance_at_end
        else:
            assert step.balance_before == segment.balance_at_end
            assert step.balance_after == following


def assert_transitions_replay(result, grants):
    """Each transition's records turn its balances before into its balances after."""
    amounts = {grant.id: grant.amount for grant in grants}
    for step in result.transitions:
        assert not set(step.expired) & set(step.voided)
        balances = dict(step.balance_before)
        for grant_id, amount in (step.expired | step.voided).items():
            assert balances.pop(grant_id) == amount
        balances.update(step.rolled_over)
        for grant_id, before in step.refilled.items():
            assert balances[grant_id] == before
            balances[grant_id] = amounts[grant_id]
        for grant_id, amount in step.activated.items():
            assert grant_id not in balances and amount == amounts[grant_id]
            balances[grant_id] = amount
        for grant_id, paid in step.overage_paid.items():
            balances[grant_id] -= paid
        assert balances == step.balance_after
        paid = sum(step.overage_paid.values(), ZERO)
        assert step.overage_after == step.overage_before - step.overage_dropped - paid
        assert step.overage_after >= 0


@settings(max_examples=300, deadline=None)
@given(
    grants=grant_lists(classified=True),
    resets=resets_strategy,
    events=event_lists(classified=True),
)
def test_conservation_order_and_bookkeeping(grants, resets, events):
    result = run(grants=grants, start=T0, end=minute(HORIZON), usage=meter(events), resets=resets)
    in_range = sum((amount for at, amount, _ in events if at < minute(HORIZON)), ZERO)
    assert result.usage == in_range
    assert (
        sum(result.grant_usages.values(), ZERO) + sum((s.overage for s in result.segments), ZERO)
        == result.usage
    )
    assert all(balance >= 0 for balance in result.balances.values())
    assert result.balance >= 0 and result.overage >= 0
    assert_segments_consistent(result, grants)
    assert_transitions_replay(result, grants)
    assert result.snapshot.balances == result.balances
    assert result.snapshot.overage == result.overage


@settings(max_examples=300, deadline=None)
@given(
    grants=grant_lists(classified=True),
    resets=resets_strategy,
    events=event_lists(classified=True),
)
def test_matches_minute_by_minute_reference(grants, resets, events):
    # Competing usage classes are attributed per segment (unclassified first), so the engine
    # matches a minute-by-minute replay when segments are cut at every minute.
    result = run(grants=grants, start=T0, end=minute(HORIZON), usage=meter(events), resets=resets,
                 boundaries=[minute(i) for i in range(1, HORIZON)])
    balances, overage = reference(grants, resets, events, HORIZON)
    assert result.balances == balances
    assert result.overage == overage


@settings(max_examples=300, deadline=None)
@given(
    grants=grant_lists(classified=False),
    resets=resets_strategy,
    events=event_lists(classified=False),
    middle=st.integers(0, HORIZON).map(minute),
)
def test_resuming_from_a_snapshot_equals_one_run(grants, resets, events, middle):
    end = minute(HORIZON)
    whole = run(grants=grants, start=T0, end=end, usage=meter(events), resets=resets)
    first = run(grants=grants, start=T0, end=middle, usage=meter(events), resets=resets)
    second = run(
        grants=grants,
        start=middle,
        end=end,
        usage=meter(events),
        resets=resets,
        snapshot=first.snapshot,
    )
    assert second.balances == whole.balances
    assert second.overage == whole.overage
    assert second.snapshot == whole.snapshot
    assert (second.period_start, second.period_usage) == (whole.period_start, whole.period_usage)
    assert first.transitions + second.transitions == whole.transitions
    assert first.usage + second.usage == whole.usage
    burned = dict(first.grant_usages)
    for grant_id, amount in second.grant_usages.items():
        burned[grant_id] = burned.get(grant_id, ZERO) + amount
    assert burned == whole.grant_usages


@settings(max_examples=200, deadline=None)
@given(
    grants=grant_lists(classified=False),
    resets=resets_strategy,
    events=event_lists(classified=False),
    cuts=st.lists(st.integers(1, HORIZON - 1).map(minute), max_size=6),
)
def test_extra_boundaries_never_change_the_outcome(grants, resets, events, cuts):
    end = minute(HORIZON)
    plain = run(grants=grants, start=T0, end=end, usage=meter(events), resets=resets)
    finer = run(
        grants=grants, start=T0, end=end, usage=meter(events), resets=resets, boundaries=cuts
    )
    assert finer.snapshot == plain.snapshot
    assert finer.transitions == plain.transitions
    assert finer.grant_usages == plain.grant_usages
    assert {s.start for s in finer.segments} >= {s.start for s in plain.segments} | set(cuts)
