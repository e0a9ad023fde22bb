"""Concurrent credit writes on one ledger against PostgreSQL."""

import random
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from billing_project.errors import DomainError
from billing_project.jobs import run as run_job
from grants import services
from grants.models import CreditBlock
from ledgers.models import Ledger, LedgerEntry
from tests.grants.factories import CustomerFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
D = Decimal
THREADS = 8
OPERATIONS = 100


def amount(rng):
    return D(rng.randint(1, 4000)) / 100


def check_ledger(customer):
    ledger = Ledger.objects.get(customer=customer)
    rows = list(LedgerEntry.objects.filter(ledger=ledger).order_by("sequence_number"))
    assert [e.sequence_number for e in rows] == list(range(1, len(rows) + 1))
    for previous, entry in zip(rows, rows[1:], strict=False):
        assert entry.starting_balance == previous.ending_balance
    assert ledger.last_sequence_number == len(rows)
    assert ledger.balance == (rows[-1].ending_balance if rows else 0)
    blocks = CreditBlock.objects.filter(ledger=ledger)
    assert all(b.balance >= 0 for b in blocks)
    open_sum = sum((b.balance for b in blocks if b.status in services.OPEN), D(0))
    assert ledger.balance == open_sum - ledger.debt
    return ledger, rows


def test_eight_threads_of_random_operations_match_a_sequential_replay():
    customer = CustomerFactory()
    done = []  # (sequence number of the last entry written, op, args, result id)
    lock = threading.Lock()
    errors = []

    def worker(seed):
        rng = random.Random(seed)
        blocks, holds = [], []
        try:
            for _ in range(OPERATIONS):
                kind = rng.choice(["increment", "increment", "decrement", "decrement", "hold",
                                   "settle", "void"])
                try:
                    if kind == "increment":
                        args = {"amount": amount(rng), "priority": rng.choice([0, 1, 2]),
                                "per_unit_cost_basis": rng.choice([None, D(0), D(1)])}
                        entry = services.credit_increment(customer=customer, actor="t", **args)
                        blocks.append(entry.credit_block_id)
                    elif kind == "decrement":
                        args = {"amount": amount(rng)}
                        entry = services.credit_decrement(customer=customer, actor="t", **args)
                    elif kind == "hold":
                        args = {"amount": amount(rng)}
                        entry = services.credit_hold_create(customer=customer, actor="t",
                                                            **args)
                        holds.append(entry.pk)
                    elif kind == "settle":
                        if not holds:
                            continue
                        hold = holds.pop(rng.randrange(len(holds)))
                        commit = rng.random() < 0.5
                        kind = "commit" if commit else "release"
                        args = {"entry_id": hold}
                        service = (services.credit_hold_commit if commit
                                   else services.credit_hold_release)
                        entry = service(customer=customer, actor="t", **args)
                    else:
                        if not blocks:
                            continue
                        args = {"block_id": rng.choice(blocks),
                                "amount": rng.choice([None, D(1)])}
                        entry = services.credit_block_void(customer=customer, actor="t",
                                                           **args)
                except DomainError:
                    continue
                with lock:
                    done.append((entry.sequence_number, kind, args, entry.pk,
                                 entry.credit_block_id))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    ledger, rows = check_ledger(customer)
    assert len(done) > THREADS * OPERATIONS // 2

    # Replay the committed operations one by one, in commit order, on a fresh customer.
    twin = CustomerFactory()
    block_map, hold_map = {}, {}
    releases = [op for op in done if op[1] == "release"]
    for _, kind, args, result_id, block_id in sorted(
            (op for op in done if op[1] != "release"), key=lambda op: op[0]):
        if kind == "increment":
            entry = services.credit_increment(customer=twin, actor="t", **args)
            block_map[block_id] = entry.credit_block_id
        elif kind == "decrement":
            services.credit_decrement(customer=twin, actor="t", **args)
        elif kind == "hold":
            hold_map[result_id] = services.credit_hold_create(customer=twin, actor="t",
                                                              **args).pk
        elif kind == "commit":
            services.credit_hold_commit(customer=twin, actor="t",
                                        entry_id=hold_map[args["entry_id"]])
        else:
            services.credit_block_void(customer=twin, actor="t", amount=args["amount"],
                                       block_id=block_map[args["block_id"]])
    for _, _, args, _, _ in releases:
        services.credit_hold_release(customer=twin, actor="t",
                                     entry_id=hold_map[args["entry_id"]])
    replay, replay_rows = check_ledger(twin)
    assert (replay.balance, replay.debt, replay.pending) == (ledger.balance, ledger.debt,
                                                             ledger.pending)
    assert len(replay_rows) == len(rows)
    assert [(e.entry_type, e.amount) for e in replay_rows] == [
        (e.entry_type, e.amount) for e in rows]
    originals = {b.pk: b.balance for b in CreditBlock.objects.filter(customer=customer)}
    for original, twin_block in block_map.items():
        assert CreditBlock.objects.get(pk=twin_block).balance == originals[original]


def test_expiry_job_concurrent_with_decrements():
    customer = CustomerFactory()
    start = timezone.now() + timedelta(seconds=1)
    for index in range(10):
        services.credit_increment(customer=customer, actor="t", amount=D(50),
                                  expiry_date=start + timedelta(milliseconds=100 * index))
    services.credit_increment(customer=customer, actor="t", amount=D(1000))
    stop = threading.Event()
    errors = []

    def spender(seed):
        rng = random.Random(seed)
        try:
            for _ in range(60):
                services.credit_decrement(customer=customer, actor="t", amount=amount(rng) / 4)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)
        finally:
            connection.close()

    def expirer():
        try:
            while not stop.is_set():
                run_job("expire_credits", as_of=timezone.now())
        except Exception as exc:  # pragma: no cover
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=spender, args=(i,)) for i in range(4)]
    jobs = [threading.Thread(target=expirer) for _ in range(2)]
    for thread in workers + jobs:
        thread.start()
    for thread in workers:
        thread.join()
    while timezone.now() < start + timedelta(seconds=1):
        time.sleep(0.05)
    stop.set()
    for thread in jobs:
        thread.join()
    run_job("expire_credits", as_of=timezone.now())
    assert not errors, errors
    check_ledger(customer)
    for block in CreditBlock.objects.filter(customer=customer, expires_at__isnull=False):
        assert block.status == "expired"
        moved = LedgerEntry.objects.filter(credit_block=block).exclude(
            entry_type="increment").aggregate(total=Sum("amount"))["total"] or 0
        assert moved == block.initial_amount
        assert LedgerEntry.objects.filter(credit_block=block,
                                          entry_type="credit_block_expiry").count() <= 1


def test_a_waiting_write_reads_blocks_committed_by_the_lock_holder():
    """The lock and the block read share one statement (grants_open_blocks): a write that
    waited for the ledger lock must see the balances the previous holder committed, not the
    statement's earlier snapshot, and a block created meanwhile."""
    customer = CustomerFactory()
    first = services.credit_increment(customer=customer, actor="t", amount=D(100))
    holding, errors = threading.Event(), []

    def holder():
        try:
            from django.db import transaction

            with transaction.atomic():
                services.credit_decrement(customer=customer, actor="t", amount=D(30))
                services.credit_increment(customer=customer, actor="t", amount=D(5),
                                          priority=0)
                holding.set()
                time.sleep(0.5)  # the other write is waiting on the lock meanwhile
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(10)
    services.credit_decrement(customer=customer, actor="t", amount=D(10))
    thread.join()
    assert not errors, errors
    ledger, rows = check_ledger(customer)
    assert ledger.balance == D(65)
    # The waiting decrement burned the new priority-0 block first, then the first block.
    assert [(e.entry_type, e.amount) for e in rows[-2:]] == [("decrement", D(5)),
                                                            ("decrement", D(5))]
    assert CreditBlock.objects.get(pk=first.credit_block_id).balance == D(65)
