"""Credit ledger writes (API.md §4): one function per business action.

Every write locks the ledger row (`Ledger`, one per customer and currency) with
``SELECT ... FOR NO KEY UPDATE``, first settles what time already decided (blocks past their
expiry get their `credit_block_expiry` entry, blocks that became effective pay off debt), then
appends entries with the next sequence numbers and chained balances. Splits over blocks come
from the burn-down engine (`grants.burn`). The API, the admin, jobs and the demo all call these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing_project.db import (
    columns,
    execute_prepared,
    model_from_row,
    models_from_rows,
    new_instance,
)
from billing_project.errors import Conflict, InvalidInput, NotFound
from grants.burn import BlockState, UsageContext, plan_deduction, plan_payoff
from grants.models import CreditBlock, TopUp
from ledgers.audit import actor_label, audit_record, record_action
from ledgers.models import AuditLog, Customer, HoldSettlement, Ledger, LedgerEntry

ZERO = Decimal(0)
OPEN = (CreditBlock.Status.ACTIVE, CreditBlock.Status.PENDING_PAYMENT)
ET = LedgerEntry.EntryType
VOID_REASONS = ("refund",)
FILTER_FIELDS = ("price_id", "meter_slug", "item_id")


def default_currency(customer: Customer) -> str:
    """Orb's default credit unit when a request names none: the customer's currency, else
    `credits`."""
    return customer.currency or "credits"


def credit_currency(customer: Customer, currency: str | None) -> str:
    """The ledger currency a request means: ISO codes upper-cased, custom units as given."""
    currency = (currency or "").strip() or default_currency(customer)
    return currency.upper() if len(currency) == 3 and currency.isalpha() else currency


# --------------------------------------------------------------------------------------------
# Locks: the ledger row is the lock target; blocks are read after it is locked.
# --------------------------------------------------------------------------------------------

def ledger_lock(*, customer: Customer, currency: str) -> Ledger:
    """Lock (creating if needed) the customer's ledger in `currency`."""
    query = Ledger.objects.select_for_update(no_key=True, of=("self",))
    ledger = query.filter(customer=customer, currency=currency).first()
    if ledger is None:
        Ledger.objects.bulk_create([Ledger(customer=customer, currency=currency)],
                                   ignore_conflicts=True)
        ledger = query.get(customer=customer, currency=currency)
    ledger.customer = customer
    return ledger


@dataclass
class _Writer:
    """Appends entries to a locked ledger; `flush` writes blocks, entries and the ledger."""

    ledger: Ledger
    actor: object
    at: datetime
    blocks: dict[str, CreditBlock] = field(default_factory=dict)
    entries: list[LedgerEntry] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    settled: bool = False
    stamp: datetime = field(default_factory=timezone.now)

    def load_blocks(self) -> None:
        self.blocks = {b.id: b for b in CreditBlock.objects.filter(ledger=self.ledger,
                                                                 status__in=OPEN)}

    def open_blocks(self) -> list[CreditBlock]:
        return [b for b in self.blocks.values() if b.status in OPEN]

    def usable_blocks(self) -> list[CreditBlock]:
        return [b for b in self.blocks.values() if b.status == CreditBlock.Status.ACTIVE]

    def append(self, *, entry_type: str, amount: Decimal, delta: Decimal,
               block: CreditBlock | None = None, status: str = "committed", **fields
               ) -> LedgerEntry:
        ledger = self.ledger
        ledger.last_sequence_number += 1
        starting = ledger.balance
        ledger.balance = starting + delta
        entry = new_instance(
            LedgerEntry, ledger=ledger, customer_id=ledger.customer_id, currency=ledger.currency,
            sequence_number=ledger.last_sequence_number, entry_type=entry_type,
            entry_status=status, amount=amount, starting_balance=starting,
            ending_balance=ledger.balance, debt_after=ledger.debt, credit_block=block,
            actor=actor_label(self.actor),
            # Entries of one write keep their sequence order in created_at order too.
            created_at=self.stamp + timedelta(microseconds=len(self.entries)), **fields,
        )
        self.entries.append(entry)
        return entry

    def change(self, block: CreditBlock, **values) -> None:
        for name, value in values.items():
            setattr(block, name, value)
        self.touched.add(block.id)

    def settle_time(self) -> None:
        """Materialise what time decided up to `at`: debt payoff by blocks that became
        effective, then expiry entries for blocks past their expiry (API.md §4)."""
        if self.ledger.debt > 0:
            self._pay_debt()
        due = sorted((b for b in self.open_blocks()
                      if b.expires_at is not None and b.expires_at <= self.at),
                     key=lambda b: (b.expires_at, b.created_at, b.id))
        for block in due:
            if block.balance > 0:
                self.append(entry_type=ET.CREDIT_BLOCK_EXPIRY, amount=block.balance,
                            delta=-block.balance, block=block)
            self.change(block, balance=ZERO, status=CreditBlock.Status.EXPIRED)
        self.settled = True

    def _pay_debt(self) -> None:
        states = [BlockState.of(b) for b in self.usable_blocks()]
        paid = plan_payoff(blocks=states, debt=self.ledger.debt, since=None, at=self.at)
        for block_id, amount in paid.items():
            block = self.blocks[block_id]
            self.change(block, balance=block.balance - amount,
                        debt_paid=block.debt_paid + amount)
            self.ledger.debt -= amount

    def available(self) -> Decimal:
        """Usable balance now minus open holds (what a non-negative customer may spend)."""
        usable = sum((b.balance for b in self.usable_blocks()
                      if BlockState.of(b).is_active_at(self.at)), ZERO)
        return usable - self.ledger.debt - self.ledger.pending

    def deduct(self, *, amount: Decimal, usage: UsageContext | None = None,
               allow_negative: bool, **fields
               ) -> list[LedgerEntry]:
        """Burn `amount` in burn order (one entry per block, the rest as debt)."""
        plan = plan_deduction(blocks=[BlockState.of(b) for b in self.usable_blocks()],
                              debt=self.ledger.debt, amount=amount, at=self.at, usage=usage)
        if not allow_negative and (plan.overage > 0 or amount > self.available()):
            raise Conflict("The decrement exceeds the available balance and the customer "
                           "does not allow a negative balance.", code="insufficient_balance",
                           extra={"available": str(self.available())})
        written = []
        for block_id, take in plan.burned:
            block = self.blocks[block_id]
            self.change(block, balance=block.balance - take)
            written.append(self.append(entry_type=ET.DECREMENT, amount=take, delta=-take,
                                       block=block, **fields))
        if plan.overage > 0:
            self.ledger.debt += plan.overage
            written.append(self.append(entry_type=ET.DECREMENT, amount=plan.overage,
                                       delta=-plan.overage, **fields))
        return written

    def flush(self, audit: AuditLog | None = None) -> None:
        """`audit`: an unsaved audit record written by the same statement."""
        if not self.settled:
            raise RuntimeError("settle_time() must run before writing")
        for block in self.blocks.values():
            if block._state.adding:
                block.save(force_insert=True)
        changed = [self.blocks[i] for i in sorted(self.touched)
                   if not self.blocks[i]._state.adding]
        self.ledger.caught_up_at = self.at
        try:
            _write(self.ledger, changed, self.entries, audit)
        except IntegrityError as exc:
            if "ledgerentry_one_expiry_per_block" in str(exc):
                raise Conflict("The block already has an expiry entry.",
                               code="block_already_expired") from None
            raise


ENTRY_FIELDS = [f for f in LedgerEntry._meta.concrete_fields]


AUDIT_FIELDS = list(AuditLog._meta.concrete_fields)


# Values `get_db_prep_save` returns unchanged for a field type (then sent as they are):
# None, and these; anything else (JSON, a naive datetime, ...) is adapted by the field.
_AS_IS = {"CharField": str, "TextField": str, "ForeignKey": str, "BigIntegerField": int,
          "IntegerField": int, "DecimalField": Decimal, "DateTimeField": datetime}
_INSERT_FIELDS: dict[str, list] = {}


def _insert_cte(name: str, table: str, fields: list, objects: list, params: list) -> str:
    columns = ", ".join(f'"{f.column}"' for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    prep = _INSERT_FIELDS.get(table)
    if prep is None:
        prep = _INSERT_FIELDS[table] = [(f.attname, _AS_IS.get(f.get_internal_type()), f)
                                        for f in fields]
    for obj in objects:
        for attname, kind, f in prep:
            value = getattr(obj, attname)
            if value is not None and (type(value) is not kind or (
                    kind is datetime and value.tzinfo is None)):
                value = f.get_db_prep_save(value, connection)
            params.append(value)
    return (f"{name} AS (INSERT INTO {table} ({columns}) VALUES "
            f"{', '.join([row] * len(objects))} RETURNING 1)")


def _write(ledger: Ledger, blocks: list[CreditBlock], entries: list[LedgerEntry],
           audit: AuditLog | None = None) -> None:
    """Blocks, new entries and the ledger row in one statement (a data-modifying CTE): the
    ledger lock is held for as few round trips as possible. Constraints and the append-only
    trigger apply as for any INSERT/UPDATE."""
    parts, params = [], []
    if blocks:
        rows = ", ".join(["(%s, %s::numeric, %s, %s::numeric, %s::timestamptz)"] * len(blocks))
        parts.append(
            "b AS (UPDATE grants_creditblock AS cb SET balance = v.balance, status = v.status, "
            "debt_paid = v.debt_paid, voided_at = v.voided_at "
            f"FROM (VALUES {rows}) AS v(id, balance, status, debt_paid, voided_at) "
            "WHERE cb.id = v.id RETURNING 1)")
        params += [value for b in blocks
                   for value in (b.pk, b.balance, b.status, b.debt_paid, b.voided_at)]
    if entries:
        parts.append(_insert_cte("e", "ledgers_ledgerentry", ENTRY_FIELDS, entries, params))
    if audit is not None:
        parts.append(_insert_cte("a", "ledgers_auditlog", AUDIT_FIELDS, [audit], params))
    sql = ("UPDATE ledgers_ledger SET last_sequence_number = %s, balance = %s, debt = %s, "
           "pending = %s, caught_up_at = %s WHERE id = %s")
    params += [ledger.last_sequence_number, ledger.balance, ledger.debt, ledger.pending,
               ledger.caught_up_at, ledger.pk]
    if parts:
        sql = "WITH " + ", ".join(parts) + " " + sql
    execute_prepared(sql, params)
    for obj in (*entries, audit) if audit is not None else entries:
        obj._state.adding = False
        obj._state.db = connection.alias


LEDGER_FIELDS = list(Ledger._meta.concrete_fields)
# One statement locks the ledger row and reads its open blocks. The blocks come from
# `grants_open_blocks` (migration grants 0003): a VOLATILE function, called for the locked row,
# so its query takes a fresh snapshot after the lock was granted (in READ COMMITTED a plain
# join would read the statement's snapshot, taken before the lock may have waited).
_LOCK_AND_LOAD = (
    f"WITH l AS (SELECT {columns(Ledger)} FROM ledgers_ledger "
    "WHERE customer_id = %s AND currency = %s FOR NO KEY UPDATE) "
    f"SELECT l.*, {columns(CreditBlock, 'cb')}"
    " FROM l LEFT JOIN LATERAL grants_open_blocks(l.id) AS cb ON true"
)


def _lock_and_load(*, customer: Customer, currency: str) -> tuple[Ledger, dict] | None:
    """The locked ledger and its open blocks in one round trip (None: no ledger yet)."""
    rows = execute_prepared(_LOCK_AND_LOAD, [customer.pk, currency], fetch=True, binary=True)
    if not rows:
        return None
    n = len(LEDGER_FIELDS)
    ledger = model_from_row(Ledger, rows[0][:n])
    ledger.customer = customer
    blocks = models_from_rows(CreditBlock, [row[n:] for row in rows if row[n] is not None])
    return ledger, {block.id: block for block in blocks}


def _writer(*, customer: Customer, currency: str, actor, at: datetime | None = None
            ) -> _Writer:
    loaded = _lock_and_load(customer=customer, currency=currency)
    if loaded is None:  # first write: create the ledger, then lock and read as usual
        ledger_lock(customer=customer, currency=currency)
        loaded = _lock_and_load(customer=customer, currency=currency)
    ledger, blocks = loaded
    now = timezone.now()
    writer = _Writer(ledger=ledger, actor=actor, at=at or now, stamp=now)
    writer.blocks = blocks
    writer.settle_time()
    return writer


def _block_for_write(writer: _Writer, *, customer: Customer, block_id: str,
                     currency: str | None) -> CreditBlock:
    block = writer.blocks.get(block_id)
    if block is None:
        block = CreditBlock.objects.filter(pk=block_id, customer=customer,
                                           ledger=writer.ledger).first()
        if block is None:
            raise NotFound(f"No credit block '{block_id}' for this customer.",
                           code="block_not_found", field="block_id")
        writer.blocks[block.id] = block
    if currency and credit_currency(customer, currency) != block.currency:
        raise InvalidInput(f"Block '{block_id}' is in {block.currency}, not {currency}.",
                           code="currency_mismatch", field="currency")
    return block


def _locate_block(*, customer: Customer, block_id: str | None, currency: str | None,
                  expiry_date: datetime | None = None) -> CreditBlock:
    """The block a request names (by id, or for expiration_change by expiry date)."""
    if block_id:
        block = CreditBlock.objects.filter(pk=block_id, customer=customer).first()
        if block is None:
            raise NotFound(f"No credit block '{block_id}' for this customer.",
                           code="block_not_found", field="block_id")
        if currency and credit_currency(customer, currency) != block.currency:
            raise InvalidInput(f"Block '{block_id}' is in {block.currency}, not {currency}.",
                               code="currency_mismatch", field="currency")
        return block
    if expiry_date is None:
        raise InvalidInput("block_id or expiry_date is required.", code="block_required",
                           field="block_id")
    candidates = CreditBlock.objects.filter(customer=customer, expires_at=expiry_date,
                                            currency=credit_currency(customer,
                                                                     currency),
                                            status__in=OPEN, balance__gt=0)
    block = min(candidates, key=lambda b: (b.priority, b.per_unit_cost_basis or ZERO,
                                           b.created_at, b.id), default=None)
    if block is None:
        raise NotFound("No open credit block with that expiry_date.", code="block_not_found",
                       field="expiry_date")
    return block


# --------------------------------------------------------------------------------------------
# Business actions
# --------------------------------------------------------------------------------------------

def _validate_filters(filters) -> list[dict]:
    result = []
    for index, item in enumerate(filters or []):
        if (not isinstance(item, dict) or item.get("field") not in FILTER_FIELDS
                or item.get("operator") not in ("includes", "excludes")
                or not isinstance(item.get("values"), list)
                or not all(isinstance(v, str) for v in item["values"])):
            raise InvalidInput("Each filter needs field (price_id, meter_slug or item_id), "
                               "operator (includes or excludes) and values [str].",
                               code="invalid_filter", field=f"filters[{index}]")
        result.append({"field": item["field"], "operator": item["operator"],
                       "values": list(item["values"])})
    return result


@transaction.atomic
def credit_increment(*, customer: Customer, amount: Decimal, actor, currency: str | None = None,
                     expiry_date: datetime | None = None, effective_date: datetime | None = None,
                     per_unit_cost_basis: Decimal | None = None, priority: int | None = None,
                     description: str | None = None, metadata: dict | None = None,
                     invoice_settings: dict | None = None, filters: list | None = None,
                     top_up: TopUp | None = None, reason: str = "") -> LedgerEntry:
    """Add a credit block. It first pays off any debt (API.md §4: increments pay negative
    balances first). With `invoice_settings`, the registered purchase hooks (invoicing) issue
    the one-off invoice, and with auto collection the block waits in `pending_payment` until
    `credit_block_activate` (see `block_activation_hook`)."""
    _positive(amount)
    if per_unit_cost_basis is not None and per_unit_cost_basis < 0:
        raise InvalidInput("per_unit_cost_basis must not be negative.", code="invalid_amount",
                           field="per_unit_cost_basis")
    if invoice_settings is not None and per_unit_cost_basis is None:
        raise InvalidInput("invoice_settings requires per_unit_cost_basis.",
                           code="cost_basis_required", field="per_unit_cost_basis")
    filters = _validate_filters(filters)
    currency = credit_currency(customer, currency)
    writer = _writer(customer=customer, currency=currency, actor=actor)
    effective_at = effective_date or writer.at
    if expiry_date is not None and expiry_date <= effective_at:
        raise InvalidInput("expiry_date must be after effective_date.", code="invalid_expiry",
                           field="expiry_date")
    block = CreditBlock(
        ledger=writer.ledger, customer=customer, currency=currency, initial_amount=amount,
        balance=amount, per_unit_cost_basis=per_unit_cost_basis,
        priority=1 if priority is None else priority, effective_at=effective_at,
        expires_at=expiry_date, filters=filters, invoice_settings=invoice_settings,
        source=CreditBlock.Source.TOP_UP if top_up else CreditBlock.Source.MANUAL,
        top_up=top_up, description=description, metadata=metadata or {},
        created_at=writer.stamp,
    )
    block.status = block_activation_hook(block)
    writer.blocks[block.id] = block
    entry = writer.append(entry_type=ET.INCREMENT, amount=amount, delta=amount, block=block,
                          description=description, metadata=metadata or {})
    writer.settle_time()  # the new block pays debt first; a block recorded expired expires
    writer.flush()
    if invoice_settings is not None:
        for hook in CREDIT_PURCHASE_HOOKS:
            hook(customer=customer, block_id=block.pk, amount=amount,
                 per_unit_cost_basis=per_unit_cost_basis, block_currency=currency,
                 invoice_settings=invoice_settings, actor=actor)
    record_action(actor=actor, action="credits.increment", target=block, reason=reason,
                  data={"after": _block_data(block), "entry": entry.pk})
    return entry


# Invoicing registers its handlers here from its AppConfig.ready(), so grants never imports
# invoicing (dependencies point one way). Both run inside the credit write's transaction.
# purchase: hook(*, customer, block_id, amount, per_unit_cost_basis, block_currency,
#                invoice_settings, actor) -> the one-off invoice for amount x cost basis.
# refund:   hook(*, block_id, credits, actor, reason) -> a credit note (or None).
CREDIT_PURCHASE_HOOKS: list[Callable[..., object]] = []
CREDIT_REFUND_HOOKS: list[Callable[..., object]] = []


def block_activation_hook(block: CreditBlock) -> str:
    """The status a new block starts in: bought through an invoice with auto collection, it
    waits for payment (`pending_payment`, never burned) when invoicing is installed."""
    settings_ = block.invoice_settings
    if settings_ is not None and settings_.get("auto_collection") and CREDIT_PURCHASE_HOOKS:
        return CreditBlock.Status.PENDING_PAYMENT
    return CreditBlock.Status.ACTIVE


@transaction.atomic
def credit_block_activate(*, block_id: str, actor, reason: str = "") -> CreditBlock:
    """A `pending_payment` block's invoice was paid: the block becomes usable (and, like any
    block that opens, pays off debt first). Idempotent: other states are left alone."""
    block = CreditBlock.objects.select_related("customer").filter(pk=block_id).first()
    if block is None:
        raise NotFound(f"No credit block '{block_id}'.", code="block_not_found")
    writer = _writer(customer=block.customer, currency=block.currency, actor=actor)
    block = writer.blocks.get(block_id, block)
    if block.status != CreditBlock.Status.PENDING_PAYMENT:
        return block
    writer.change(block, status=CreditBlock.Status.ACTIVE)
    writer.settle_time()
    writer.flush()
    record_action(actor=actor, action="credits.activate", target=block, reason=reason,
                  data={"after": _block_data(block)})
    return block


@transaction.atomic
def credit_decrement(*, customer: Customer, amount: Decimal, actor, currency: str | None = None,
                     description: str | None = None, metadata: dict | None = None,
                     event_id: str | None = None, invoice_id: str | None = None,
                     price_id: str | None = None, meter_slug: str | None = None,
                     reason: str = "") -> LedgerEntry:
    """Burn `amount` in burn-down order; returns the last entry written. With `price_id`
    or `meter_slug` (priced usage) block filters apply; manual decrements ignore them."""
    _positive(amount)
    currency = credit_currency(customer, currency)
    writer = _writer(customer=customer, currency=currency, actor=actor)
    usage = (UsageContext(price_id=price_id, meter_slug=meter_slug)
             if price_id or meter_slug else None)
    entries = writer.deduct(amount=amount, usage=usage,
                            allow_negative=customer.allow_negative_balance,
                            description=description, metadata=metadata or {},
                            event_id=event_id, invoice_id=invoice_id, price_id=price_id)
    # The audit record goes into the same statement as the entries (one round trip less).
    writer.flush(audit=audit_record(actor=actor, action="credits.decrement", target=entries[-1],
                              reason=reason,
                              data={"amount": str(amount), "currency": currency,
                                    "entries": [e.pk for e in entries],
                                    "ending_balance": str(writer.ledger.balance)}))
    return entries[-1]


@transaction.atomic
def credit_hold_create(*, customer: Customer, amount: Decimal, actor,
                       currency: str | None = None, description: str | None = None,
                       metadata: dict | None = None, reason: str = "") -> LedgerEntry:
    """A hold: a pending decrement that reserves `amount` (available = balance - pending)."""
    _positive(amount)
    currency = credit_currency(customer, currency)
    writer = _writer(customer=customer, currency=currency, actor=actor)
    if not customer.allow_negative_balance and amount > writer.available():
        raise Conflict("The hold exceeds the available balance.", code="insufficient_balance",
                       extra={"available": str(writer.available())})
    writer.ledger.pending += amount
    entry = writer.append(entry_type=ET.DECREMENT, amount=amount, delta=ZERO, status="pending",
                          description=description, metadata=metadata or {})
    writer.flush()
    record_action(actor=actor, action="credits.hold", target=entry, reason=reason,
                  data={"amount": str(amount), "currency": currency})
    return entry


def _open_hold(*, customer: Customer, entry_id: str) -> LedgerEntry:
    hold = LedgerEntry.objects.filter(pk=entry_id, customer=customer).first()
    if hold is None:
        raise NotFound(f"No ledger entry '{entry_id}' for this customer.",
                       code="ledger_entry_not_found")
    if hold.entry_status != LedgerEntry.EntryStatus.PENDING:
        raise Conflict("Only pending entries (holds) can be committed or released.",
                       code="entry_not_pending")
    return hold


def _settle_hold(writer: _Writer, hold: LedgerEntry, outcome: str) -> None:
    if HoldSettlement.objects.filter(hold=hold).exists():
        raise Conflict("The hold is already settled.", code="hold_already_settled")
    writer.ledger.pending -= hold.amount
    HoldSettlement.objects.create(hold=hold, outcome=outcome, actor=actor_label(writer.actor),
                                  created_at=writer.stamp)


@transaction.atomic
def credit_hold_commit(*, customer: Customer, entry_id: str, actor, reason: str = ""
                       ) -> LedgerEntry:
    """Settle a hold: burn its amount (entries point at the hold); returns the last one."""
    hold = _open_hold(customer=customer, entry_id=entry_id)
    writer = _writer(customer=customer, currency=hold.currency, actor=actor)
    _settle_hold(writer, hold, HoldSettlement.Outcome.COMMITTED)
    entries = writer.deduct(amount=hold.amount, allow_negative=customer.allow_negative_balance,
                            description=hold.description, metadata=hold.metadata, hold=hold)
    writer.flush()
    record_action(actor=actor, action="credits.hold_commit", target=hold, reason=reason,
                  data={"entries": [e.pk for e in entries]})
    return entries[-1]


@transaction.atomic
def credit_hold_release(*, customer: Customer, entry_id: str, actor, reason: str = ""
                        ) -> LedgerEntry:
    """Free a hold's reservation; the balance is unchanged. Returns the hold."""
    hold = _open_hold(customer=customer, entry_id=entry_id)
    writer = _writer(customer=customer, currency=hold.currency, actor=actor)
    _settle_hold(writer, hold, HoldSettlement.Outcome.RELEASED)
    writer.flush()
    record_action(actor=actor, action="credits.hold_release", target=hold, reason=reason)
    return hold


@transaction.atomic
def credit_block_void(*, customer: Customer, block_id: str, actor, amount: Decimal | None = None,
                      void_reason: str | None = None, currency: str | None = None,
                      description: str | None = None, metadata: dict | None = None,
                      reason: str = "") -> LedgerEntry:
    """Void up to the block's remaining balance (default: all of it): `void_initiated` then
    `void`. Not retroactive: what was burned stays burned. Voiding everything left ends the
    block (`voided`, it takes no further usage); a smaller amount leaves it active."""
    if amount is not None:
        _positive(amount)
    if void_reason is not None and void_reason not in VOID_REASONS:
        raise InvalidInput("void_reason must be 'refund'.", code="invalid_void_reason",
                           field="void_reason")
    located = _locate_block(customer=customer, block_id=block_id, currency=currency)
    writer = _writer(customer=customer, currency=located.currency, actor=actor)
    block = _block_for_write(writer, customer=customer, block_id=located.pk, currency=None)
    _require_open(block)
    if block.balance == 0:
        raise Conflict("The block has no balance left to void.", code="block_depleted")
    amount = block.balance if amount is None else amount
    if amount > block.balance:
        raise InvalidInput(f"At most the block's balance ({block.balance}) can be voided.",
                           code="amount_exceeds_balance", field="amount")
    before = _block_data(block)
    remaining = block.balance
    writer.append(entry_type=ET.VOID_INITIATED, amount=remaining, delta=ZERO, block=block,
                  void_amount=amount, void_reason=void_reason,
                  new_block_expiry_date=block.expires_at, description=description,
                  metadata=metadata or {})
    closes = amount == remaining
    writer.change(block, balance=remaining - amount,
                  status=CreditBlock.Status.VOIDED if closes else block.status,
                  voided_at=writer.at if closes else None)
    entry = writer.append(entry_type=ET.VOID, amount=amount, delta=-amount, block=block,
                          void_amount=amount, void_reason=void_reason,
                          description=description, metadata=metadata or {})
    writer.flush()
    if void_reason == "refund":
        for hook in CREDIT_REFUND_HOOKS:
            hook(block_id=block.pk, credits=amount, actor=actor, reason=reason or "refund")
    record_action(actor=actor, action="credits.void", target=block, reason=reason,
                  data={"before": before, "after": _block_data(block),
                        "void_reason": void_reason, "amount": str(amount)})
    return entry


@transaction.atomic
def credit_block_amend(*, customer: Customer, block_id: str, amount: Decimal, actor,
                       currency: str | None = None, description: str | None = None,
                       metadata: dict | None = None, reason: str = "") -> LedgerEntry:
    """Return credits to a block (undo of a decrement), up to its initial amount."""
    _positive(amount)
    located = _locate_block(customer=customer, block_id=block_id, currency=currency)
    writer = _writer(customer=customer, currency=located.currency, actor=actor)
    block = _block_for_write(writer, customer=customer, block_id=located.pk, currency=None)
    _require_open(block)
    if block.balance + amount > block.initial_amount:
        raise InvalidInput(
            f"The block would exceed its initial amount ({block.initial_amount}).",
            code="amendment_exceeds_initial_amount", field="amount")
    before = _block_data(block)
    writer.change(block, balance=block.balance + amount)
    entry = writer.append(entry_type=ET.AMENDMENT, amount=amount, delta=amount, block=block,
                          description=description, metadata=metadata or {})
    writer.flush()
    record_action(actor=actor, action="credits.amend", target=block, reason=reason,
                  data={"before": before, "after": _block_data(block), "amount": str(amount)})
    return entry


@transaction.atomic
def credit_block_change_expiry(*, customer: Customer, target_expiry_date: datetime, actor,
                               block_id: str | None = None, expiry_date: datetime | None = None,
                               amount: Decimal | None = None, currency: str | None = None,
                               description: str | None = None, metadata: dict | None = None,
                               reason: str = "") -> LedgerEntry:
    """Move `amount` (default: the whole balance) into a new block expiring at
    `target_expiry_date` with the same cost basis; the entry names the source block."""
    if amount is not None:
        _positive(amount)
    located = _locate_block(customer=customer, block_id=block_id, currency=currency,
                            expiry_date=expiry_date)
    writer = _writer(customer=customer, currency=located.currency, actor=actor)
    block = _block_for_write(writer, customer=customer, block_id=located.pk, currency=None)
    _require_open(block)
    if target_expiry_date <= writer.at:
        raise InvalidInput("target_expiry_date must be in the future.", code="expiry_in_past",
                           field="target_expiry_date")
    if target_expiry_date <= block.effective_at:
        raise InvalidInput("target_expiry_date must be after the block's effective date.",
                           code="invalid_expiry", field="target_expiry_date")
    amount = block.balance if amount is None else amount
    if amount <= 0 or amount > block.balance:
        raise InvalidInput(f"amount must be > 0 and at most the block's balance "
                           f"({block.balance}).", code="amount_exceeds_balance", field="amount")
    before = _block_data(block)
    writer.change(block, balance=block.balance - amount)
    new_block = CreditBlock(
        ledger=writer.ledger, customer=customer, currency=block.currency,
        initial_amount=amount, balance=amount, per_unit_cost_basis=block.per_unit_cost_basis,
        priority=block.priority, effective_at=block.effective_at,
        expires_at=target_expiry_date, status=block.status, filters=block.filters,
        source=CreditBlock.Source.EXPIRATION_CHANGE, source_block=block,
        description=description or block.description, metadata=block.metadata,
        created_at=writer.stamp,
    )
    writer.blocks[new_block.id] = new_block
    entry = writer.append(entry_type=ET.EXPIRATION_CHANGE, amount=amount, delta=ZERO,
                          block=block, new_block_expiry_date=target_expiry_date,
                          description=description, metadata=metadata or {})
    writer.flush()
    record_action(actor=actor, action="credits.change_expiry", target=block, reason=reason,
                  data={"before": before, "after": _block_data(block),
                        "new_block": new_block.pk, "amount": str(amount),
                        "target_expiry_date": target_expiry_date.isoformat()})
    return entry


@transaction.atomic
def credit_ledger_settle(*, ledger_id: str, at: datetime, actor=None) -> list[LedgerEntry]:
    """Write what time decided for one ledger (expiry entries, debt payoff) as of `at`.
    Idempotent: a second call finds nothing due."""
    ledger = Ledger.objects.select_for_update(no_key=True, of=("self",)).get(pk=ledger_id)
    writer = _Writer(ledger=ledger, actor=actor, at=at)
    writer.load_blocks()
    writer.settle_time()
    if writer.entries or writer.touched:
        writer.flush()
    return writer.entries


def _positive(amount: Decimal) -> None:
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise InvalidInput("amount must be a number greater than 0.", code="invalid_amount",
                           field="amount")


def _require_open(block: CreditBlock) -> None:
    if block.status == CreditBlock.Status.VOIDED:
        raise Conflict(f"Block '{block.pk}' is voided.", code="block_already_voided")
    if block.status == CreditBlock.Status.EXPIRED:
        raise Conflict(f"Block '{block.pk}' has expired.", code="block_expired")


def _block_data(block: CreditBlock) -> dict:
    return {"balance": str(block.balance), "status": block.status,
            "expiry_date": block.expires_at.isoformat() if block.expires_at else None,
            "initial_amount": str(block.initial_amount)}


# --------------------------------------------------------------------------------------------
# Automatic top-ups
# --------------------------------------------------------------------------------------------

@transaction.atomic
def top_up_create(*, customer: Customer, actor, currency: str, threshold: Decimal,
                  amount: Decimal, per_unit_cost_basis: Decimal, invoice_settings: dict,
                  expires_after: int | None = None, expires_after_unit: str | None = None,
                  active_from: datetime | None = None, reason: str = "") -> TopUp:
    """Set the customer's top-up for `currency`, replacing the current one (as Orb)."""
    _positive(amount)
    currency = credit_currency(customer, currency)
    now = timezone.now()
    replaced = list(TopUp.objects.select_for_update()
                    .filter(customer=customer, currency=currency, deleted_at__isnull=True))
    for old in replaced:
        old.deleted_at = now
        old.save(update_fields=["deleted_at"])
    top_up = TopUp(customer=customer, currency=currency, threshold=threshold, amount=amount,
                   per_unit_cost_basis=per_unit_cost_basis,
                   invoice_settings=invoice_settings or {}, expires_after=expires_after,
                   expires_after_unit=expires_after_unit, active_from=active_from or now)
    try:
        with transaction.atomic():
            top_up.save(force_insert=True)
    except IntegrityError as exc:
        if "topup_one_active_per_currency" in str(exc):
            raise Conflict("A top-up for this currency was created concurrently.",
                           code="top_up_exists") from None
        raise
    record_action(actor=actor, action="credits.top_up_create", target=top_up, reason=reason,
                  data={"replaced": [old.pk for old in replaced], "threshold": str(threshold),
                        "amount": str(amount), "currency": currency})
    return top_up


@transaction.atomic
def top_up_delete(*, customer: Customer, top_up_id: str, actor, reason: str = "") -> TopUp:
    top_up = (TopUp.objects.select_for_update()
              .filter(pk=top_up_id, customer=customer, deleted_at__isnull=True).first())
    if top_up is None:
        raise NotFound(f"No active top-up '{top_up_id}' for this customer.",
                       code="top_up_not_found")
    top_up.deleted_at = timezone.now()
    top_up.save(update_fields=["deleted_at"])
    record_action(actor=actor, action="credits.top_up_delete", target=top_up, reason=reason)
    return top_up


@transaction.atomic
def top_up_run(*, top_up_id: str, at: datetime, actor="system:run_top_ups"
               ) -> LedgerEntry | None:
    """One increment per threshold crossing: fires when the balance is below the threshold
    and the rule is armed; re-arms once the balance is back at or above it."""
    from grants.selectors import credit_balance
    from ledgers.periods import expiration_at

    top_up = (TopUp.objects.select_for_update().select_related("customer")
              .filter(pk=top_up_id, deleted_at__isnull=True).first())
    if top_up is None or top_up.active_from > at:
        return None
    customer = top_up.customer
    ledger_lock(customer=customer, currency=top_up.currency)  # balance read under the lock
    balance = credit_balance(customer=customer, currency=top_up.currency).balance
    if balance >= top_up.threshold:
        if not top_up.armed:
            top_up.armed = True
            top_up.save(update_fields=["armed"])
        return None
    if not top_up.armed:
        return None
    expiry = None
    if top_up.expires_after:
        expiry = expiration_at(at, top_up.expires_after_unit, top_up.expires_after,
                               customer.timezone)
    entry = credit_increment(
        customer=customer, amount=top_up.amount, actor=actor, currency=top_up.currency,
        per_unit_cost_basis=top_up.per_unit_cost_basis, expiry_date=expiry,
        invoice_settings=top_up.invoice_settings or None, top_up=top_up,
        description="Automatic top-up")
    top_up.armed = False
    top_up.save(update_fields=["armed"])
    return entry
