"""Credit ledger benchmark: decrements through the service layer and balance reads.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/anything .venv/bin/python bench/ledger.py

Uses its own database (`h_credits_bench` on the same server, or BENCH_DATABASE_URL), created
and migrated here. Prints decrements/s for 8 threads on one hot customer and spread over 1,000
customers, and the p50/p95 of a balance read with 100 active blocks and 10,000 entries.
"""

import os
import statistics
import sys
import threading
import time
from decimal import Decimal

import _common  # noqa: E402 - also puts the project on sys.path

THREADS = int(os.environ.get("BENCH_THREADS", 8))
HOT_OPS = int(os.environ.get("BENCH_HOT_OPS", 4000))
SPREAD_CUSTOMERS = 1000
SPREAD_OPS = int(os.environ.get("BENCH_SPREAD_OPS", 8000))
READS = int(os.environ.get("BENCH_READS", 300))


def setup() -> None:
    _common.setup_django("h_credits_bench")


def _process_target(work, items, queue):
    from django.db import connection

    try:
        for item in items:
            work(item)
        queue.put(None)
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        queue.put(repr(exc))
    finally:
        connection.close()


def run_threads(work, items_per_thread):
    """Run `work` over each worker's items: threads (default), or forked processes with
    BENCH_WORKERS=processes (no GIL; the same service code)."""
    from django.db import connection

    errors = []
    if os.environ.get("BENCH_WORKERS") == "processes":
        import multiprocessing

        connection.close()
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        workers = [context.Process(target=_process_target, args=(work, items, queue))
                   for items in items_per_thread]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        results = [queue.get() for _ in workers]
        elapsed = time.perf_counter() - started
        for worker in workers:
            worker.join()
        errors = [r for r in results if r is not None]
        if errors:
            raise RuntimeError(errors[0])
        return elapsed

    def target(index):
        try:
            for item in items_per_thread[index]:
                work(item)
        except Exception as exc:  # noqa: BLE001 - reported
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


def hot_decrement(customer):
    from grants import services

    services.credit_decrement(customer=customer, amount=Decimal("1.5"), actor="bench")


def spread_decrement(customer):
    from grants import services

    services.credit_decrement(customer=customer, amount=Decimal("0.25"), actor="bench")


def main() -> None:
    # CPython's GIL switch interval (5 ms) unless BENCH_SWITCH_INTERVAL says otherwise: with
    # the write path's 4 round trips a shorter one no longer helps the hot customer (the lock
    # holder) and costs the spread run ~8% in GIL handoffs (0.5 ms: hot 702/s, spread 1,401/s;
    # 5 ms: 679-704/s and 1,451-1,483/s, on one machine in one session).
    if os.environ.get("BENCH_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    print(f"cpu calibration (10M-addition Python loop): {_common.cpu_calibration()} s")
    setup()
    from grants import selectors, services
    from ledgers.models import Customer

    run = str(int(time.time()))
    D = Decimal

    def customer(name):
        return Customer.objects.create(name=name, email=f"{name}@bench.example",
                                       external_customer_id=f"bench-{run}-{name}",
                                       currency="USD")

    # 1. One hot customer, 8 threads.
    hot = customer("hot")
    for index in range(5):
        services.credit_increment(customer=hot, actor="bench", amount=D(10) ** 9,
                                  priority=index % 3, per_unit_cost_basis=D(index))
    per_thread = [[hot] * (HOT_OPS // THREADS) for _ in range(THREADS)]
    elapsed = run_threads(hot_decrement, per_thread)
    workers = "processes" if os.environ.get("BENCH_WORKERS") == "processes" else "threads"
    print(f"hot customer: {HOT_OPS} decrements, {THREADS} {workers}: "
          f"{HOT_OPS / elapsed:,.0f}/s")

    # 2. Spread over 1,000 customers.
    customers = [customer(f"c{i}") for i in range(SPREAD_CUSTOMERS)]
    for item in customers:
        services.credit_increment(customer=item, actor="bench", amount=D(10) ** 6)
    ops = [customers[i % SPREAD_CUSTOMERS] for i in range(SPREAD_OPS)]
    per_thread = [ops[i::THREADS] for i in range(THREADS)]
    elapsed = run_threads(spread_decrement, per_thread)
    print(f"spread over {SPREAD_CUSTOMERS} customers: {SPREAD_OPS} decrements, {THREADS} "
          f"{workers}: {SPREAD_OPS / elapsed:,.0f}/s")

    # 3. Balance read: 100 active blocks, 10,000 entries.
    reader = customer("reader")
    for index in range(100):
        services.credit_increment(customer=reader, actor="bench", amount=D(10) ** 6,
                                  priority=index % 5)
    while reader.ledgers.get().last_sequence_number < 10_000:
        services.credit_decrement(customer=reader, actor="bench", amount=D("0.5"))
    timings = []
    for _ in range(READS):
        started = time.perf_counter()
        balance = selectors.credit_balance(customer=reader, currency="USD")
        timings.append((time.perf_counter() - started) * 1000)
    assert len(balance.blocks) == 100
    timings.sort()
    print(f"balance read (100 blocks, {reader.ledgers.get().last_sequence_number:,} entries): "
          f"p50 {statistics.median(timings):.2f} ms, "
          f"p95 {timings[int(len(timings) * 0.95)]:.2f} ms")
    print(f"cpu calibration at the end: {_common.cpu_calibration()} s")


if __name__ == "__main__":
    main()
