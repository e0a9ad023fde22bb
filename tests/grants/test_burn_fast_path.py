"""The deduction fast path (`grants.burn._greedy_deduction`) gives the engine's answer.

`plan_deduction` skips `engine.run` when every active block takes the usage (a manual
decrement, or no block has filters); these properties compare it with the engine path
(`_engine_deduction`) on random blocks, including blocks not active at the instant, ties in
burn order, zero balances, debt and amounts above the total balance.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from grants import burn, engine
from grants.burn import BlockState, UsageContext

T0 = datetime(2025, 1, 1, tzinfo=UTC)
AT = T0 + timedelta(minutes=100)


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


money = st.integers(0, 20_000).map(lambda n: Decimal(n).scaleb(-2))
positive_money = st.integers(1, 20_000).map(lambda n: Decimal(n).scaleb(-2))


@st.composite
def block_lists(draw) -> list[BlockState]:
    blocks = []
    for index in range(draw(st.integers(0, 6))):
        initial = draw(positive_money)
        balance = min(draw(money), initial)
        effective = minute(draw(st.integers(0, 150)))
        expires = draw(st.none() | st.integers(1, 120).map(lambda n, e=effective:
                                                         e + timedelta(minutes=n)))
        blocks.append(BlockState(
            id=f"cb_{index}", initial_amount=initial, balance=balance, effective_at=effective,
            created_at=minute(draw(st.integers(0, 3))), priority=draw(st.integers(0, 2)),
            expires_at=expires, cost_basis=draw(st.none() | st.sampled_from(
                [Decimal(0), Decimal("0.5"), Decimal(1)])),
        ))
    return blocks


@settings(max_examples=400, deadline=None)
@given(blocks=block_lists(), debt=money, amount=positive_money,
       priced=st.booleans(), at_offset=st.integers(-1, 1))
def test_fast_path_matches_the_engine(blocks, debt, amount, priced, at_offset):
    at = AT + timedelta(microseconds=at_offset)
    usage = UsageContext(price_id="price_1") if priced else None
    active = [b for b in blocks if b.is_active_at(at)]
    fast = burn._greedy_deduction(active, amount)
    reference = burn._engine_deduction(active, debt, amount, at, usage)
    assert fast == reference
    assert burn.plan_deduction(blocks=blocks, debt=debt, amount=amount, at=at,
                               usage=usage) == reference


@settings(max_examples=200, deadline=None)
@given(blocks=block_lists())
def test_burn_order_key_is_the_engines(blocks):
    for block in blocks:
        assert burn.burn_order_key(block) == engine.burn_order_key(burn._grant(block, None))


def test_filtered_blocks_with_priced_usage_take_the_engine_path():
    filtered = BlockState(id="cb_f", initial_amount=Decimal(10), balance=Decimal(10),
                          effective_at=T0, created_at=T0, priority=0,
                          filters=(("price_id", "includes", ("price_2",)),))
    plain = BlockState(id="cb_p", initial_amount=Decimal(10), balance=Decimal(10),
                       effective_at=T0, created_at=T0, priority=1)
    result = burn.plan_deduction(blocks=[filtered, plain], debt=Decimal(0), amount=Decimal(4),
                                 at=AT, usage=UsageContext(price_id="price_1"))
    assert result.burned == [("cb_p", Decimal(4))]
    manual = burn.plan_deduction(blocks=[filtered, plain], debt=Decimal(0),
                                 amount=Decimal(4), at=AT)
    assert manual.burned == [("cb_f", Decimal(4))]
