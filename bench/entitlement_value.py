"""Benchmark of GET /v1/customers/{id}/entitlements/{key}/value over HTTP against gunicorn.

Two customers on one sum meter, each with a metered entitlement (monthly usage period over
the last ~3 months, so 3 automatic resets), 20 grants (priorities, expiries, rollover,
weekly recurrence) and N usage events spread evenly over those 3 months: "large" (1,000,000
events by default) and "small" (10,000). Events are bulk-inserted and rolled up with
metering's own rollup rebuild; the snapshot jobs then run as they would in production.

Reports p50/p99 latency of single-client requests, throughput and latency with 8 concurrent
clients, and p50(large) / p50(small); then the same for a plain one-row read through the same
stack (GET /v1/customers/{id}: API key, one row, DRF) as the machine's reference point, and the
ratio of the value endpoint's throughput to it.

    .venv/bin/python bench/entitlement_value.py [--events 1000000] [--small 10000]
        [--seconds 10] [--requests 1000] [--workers CPUS] [--clients 8] [--jit] [--reuse-db]
        [--worker-class sync|gthread] [--threads 1] [--keep-alive]

By default as in production with sync workers: no keep-alive, one TCP connection per request.
With --worker-class gthread --keep-alive the clients keep their connections open (as a
product service calling the endpoint on its hot path would). The loaded phase also reports the
CPU time per request of gunicorn, of this database's PostgreSQL backends and of the client.

Uses its own database (BENCH_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/h_entitlements_bench), dropped and recreated each run
(--reuse-db: keep the data of the previous run and only run the snapshot job). PostgreSQL's
JIT is switched off for that database unless --jit: compiling the plan of metering's usage
query costs ~25 ms per request at 1M events (the same setting is recommended for the service).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import _common  # noqa: E402 - also puts the project on sys.path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/h_entitlements_bench"


def _recreate_database(url: str, *, jit: bool) -> None:
    import psycopg

    _common.recreate_database(url)
    if not jit:  # JIT compiles the usage query's plan on every call: ~25 ms at 1M events
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{urlparse(url).path.lstrip("/")}" SET jit = off')


def _setup(n_large: int, n_small: int) -> dict:
    import django

    django.setup()
    from django.db import connection, transaction

    from entitlements import services
    from entitlements.models import Entitlement
    from ledgers.services import api_key_create, customer_create
    from metering import rollups
    from metering import services as metering_services
    from metering.models import Event

    now = datetime.now(UTC).replace(microsecond=0)
    anchor = now - timedelta(days=90)
    start_events = anchor
    end_events = now - timedelta(minutes=2)
    meter = metering_services.meter_create(actor="bench", slug="bench_tokens",
                                           name="Bench tokens", event_name="bench_tokens",
                                           aggregation="sum", value_property="tokens")
    feature = services.feature_create(actor="bench", key="bench_tokens", name="Bench tokens",
                                      meter_slug=meter.slug)
    targets = {}
    for label, n_events in (("small", n_small), ("large", n_large)):
        customer = customer_create(actor="bench", name=f"Bench {label}",
                                   email=f"{label}@bench.example",
                                   external_customer_id=f"bench-{label}")
        entitlement = services.entitlement_create(
            actor="bench", customer=customer, type="metered", feature_key=feature.key,
            usage_period={"interval": "month", "anchor": anchor}, measure_usage_from=anchor,
            preserve_overage_at_reset=True, now=anchor)
        _grants(services, entitlement, anchor)
        t0 = time.perf_counter()
        step_us = int((end_events - start_events).total_seconds() * 1_000_000 // n_events)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {Event._meta.db_table}
                    (event_id, customer_id, external_customer_id, event_name, timestamp,
                     properties, deprecated, counted, version, created_at)
                SELECT %(prefix)s || g, %(customer)s, %(external)s, 'bench_tokens',
                       %(start)s + (g::bigint * %(step)s::bigint) * interval '1 microsecond',
                       jsonb_build_object('tokens', (g %% 10) + 1), false, true, 1, now()
                FROM generate_series(0, %(n)s - 1) AS g
                """,
                {"prefix": f"bench-{label}-", "customer": customer.pk,
                 "external": customer.external_customer_id, "start": start_events,
                 "step": step_us, "n": n_events})
        _roll_up(rollups, customer, meter)
        print(f"  {label}: {n_events} events inserted and rolled up in "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
        targets[label] = (customer.pk, entitlement.pk)
    from billing_project import jobs

    for name in ("reset_entitlements", "issue_recurring_grants", "snapshot_balances"):
        print(f"  job {name}: {jobs.run(name)}", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    _, raw_key = api_key_create(name="bench", scopes=["read"])
    assert Entitlement.objects.count() == 2
    return {"targets": targets, "key": raw_key}


def _roll_up(rollups, customer, meter) -> None:
    """Fold the bulk-inserted events into metering's rollups, as its own jobs would."""
    from django.db import transaction

    if hasattr(rollups, "compact"):  # watermark design: fold the tail
        rollups.compact()
    else:  # earlier design: rebuild under the exclusive lock
        with transaction.atomic():
            rollups.lock_exclusive()
            rollups.rebuild(customer_ids=[customer.pk], meter_ids=[meter.pk])


def _grants(services, entitlement, anchor) -> None:
    """20 grants: priorities, expiries, rollover rules, weekly recurrence, later starts."""
    D = Decimal
    specs = []
    for i in range(4):  # long-lived packs that roll over
        specs.append(dict(amount=D(200_000), priority=1 + i, effective_at=anchor,
                          expiration={"duration": "year", "count": 1},
                          max_rollover_amount=D(50_000 * (i + 1))))
    for _ in range(4):  # weekly allowances (refilled, no rollover)
        specs.append(dict(amount=D(25_000), priority=0, effective_at=anchor,
                          expiration={"duration": "year", "count": 1},
                          recurrence={"interval": "week"}, max_rollover_amount=D(0)))
    for month in range(3):  # monthly top-ups, starting within each period
        for i in range(4):
            effective = anchor + timedelta(days=30 * month + 3 + i)
            specs.append(dict(amount=D(60_000), priority=2 + i, effective_at=effective,
                              expiration={"duration": "month", "count": 1},
                              min_rollover_amount=D(1_000), max_rollover_amount=D(10_000)))
    assert len(specs) == 20
    for spec in specs:
        services.grant_create(actor="bench", entitlement=entitlement, now=spec["effective_at"],
                              **spec)


_local = threading.local()  # the client's persistent connection (--keep-alive), per thread
KEEP_ALIVE = False


def _request(port: int, path: str, key: str) -> tuple[float, int, bytes]:
    start = time.perf_counter()
    conn = getattr(_local, "conn", None) if KEEP_ALIVE else None
    reused = conn is not None
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        body = response.read()
    except (http.client.HTTPException, ConnectionError):
        conn.close()
        _local.conn = None
        if not reused:
            raise
        return _request(port, path, key)  # the server closed an idle connection: a new one
    if KEEP_ALIVE and not response.will_close:
        _local.conn = conn
    else:
        conn.close()
        _local.conn = None
    return time.perf_counter() - start, response.status, body


def _cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _server_pids(gunicorn_pid: int, db_name: str) -> tuple[list[int], list[int]]:
    """gunicorn (master and workers) and the PostgreSQL backends connected to our database."""
    import psutil

    master = psutil.Process(gunicorn_pid)
    workers = [gunicorn_pid, *(p.pid for p in master.children(recursive=True))]
    backends = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if cmdline.startswith("postgres:") and f" {db_name} " in f"{cmdline} ":
            backends.append(proc.pid)
    return workers, backends


def _sequential(port, path, key, n) -> list[float]:
    out = []
    for _ in range(n):
        elapsed, status, body = _request(port, path, key)
        assert status == 200, body
        out.append(elapsed)
    return out


def _concurrent(port, path, key, clients, seconds, measure=None
                ) -> tuple[list[float], float, dict]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    errors = []

    def client():
        mine = []
        while time.perf_counter() < stop:
            elapsed, status, body = _request(port, path, key)
            if status != 200:
                errors.append(body)
                return
            mine.append(elapsed)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    pids = measure() if measure else ([], [])
    before = [_cpu_seconds(p) for p in pids] + [time.process_time()]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    # processes that appeared meanwhile (e.g. a gthread worker's new database connections)
    # count with all their CPU time
    pids_after = measure() if measure else ([], [])
    union = [sorted(set(a) | set(b)) for a, b in zip(pids, pids_after, strict=True)]
    after = [_cpu_seconds(p) for p in union] + [time.process_time()]
    assert not errors, errors[:1]
    n = len(latencies)
    cpu = {}
    if measure:  # CPU milliseconds per request (PostgreSQL: backends of this database only)
        for name, b, a in zip(("gunicorn", "postgres", "client"), before, after, strict=True):
            cpu[f"cpu_ms_per_request_{name}"] = round((a - b) * 1000 / n, 3)
    return latencies, n / wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="gunicorn sync workers (default: one per CPU)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--worker-class", default="sync",
                        help="gunicorn worker class (sync: no keep-alive; gthread: keep-alive)")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker")
    parser.add_argument("--keep-alive", action="store_true",
                        help="clients reuse their connection (needs a worker class that keeps "
                             "connections alive, e.g. gthread)")
    parser.add_argument("--jit", action="store_true",
                        help="leave PostgreSQL's JIT on (default: off for this database)")
    parser.add_argument("--reuse-db", action="store_true",
                        help="skip setup; use the data of the previous run")
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    db_name = urlparse(url).path.lstrip("/")
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "billing_project.settings",
           "CELERY_BROKER_FOLDER": f"/tmp/{db_name}-broker", "LOG_LEVEL": "WARNING",
           "DEBUG": "0"}
    os.environ.update(env)
    state_file = Path(f"/tmp/{db_name}-state.json")
    if args.reuse_db and state_file.exists():
        state = json.loads(state_file.read_text())
    else:
        print(f"Database {url}: recreating and migrating", flush=True)
        _recreate_database(url, jit=args.jit)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env,
                       check=True)
        state = _setup(args.events, args.small)
        state_file.write_text(json.dumps(state))

    if args.reuse_db:  # what beat would have done since the last run
        subprocess.run([sys.executable, "manage.py", "run_job", "snapshot_balances"], cwd=ROOT,
                       env=env, check=True)
    global KEEP_ALIVE
    KEEP_ALIVE = args.keep_alive
    port = _common.free_port()
    gunicorn = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "billing_project.wsgi", "--bind",
         f"127.0.0.1:{port}", "--workers", str(args.workers), "--log-level", "warning",
         "--worker-class", args.worker_class, "--threads", str(args.threads),
         "--keep-alive", "30"],
        cwd=ROOT, env=env)
    setup = {"cpu_calibration_s_at_start": _common.cpu_calibration(), "workers": args.workers,
             "worker_class": args.worker_class,
             "threads": args.threads, "client_keep_alive": args.keep_alive,
             "clients": args.clients, "load_average_at_start": os.getloadavg()}
    try:
        for _ in range(100):
            try:
                if _request(port, "/healthz", "")[1] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        results = {}
        paths = [(label, f"/v1/customers/{customer_id}/entitlements/bench_tokens/value")
                 for label, (customer_id, _entitlement_id) in state["targets"].items()]
        # The reference point: a plain one-row read (the customer) through the same stack.
        paths.append(("baseline_customer_read",
                      f"/v1/customers/{state['targets']['large'][0]}"))
        for label, path in paths:
            _, status, body = _request(port, path, state["key"])
            assert status == 200, body
            _sequential(port, path, state["key"], 200)  # warm every worker
            single = _sequential(port, path, state["key"], args.requests)
            loaded, rate, cpu = _concurrent(
                port, path, state["key"], args.clients, args.seconds,
                measure=lambda: _server_pids(gunicorn.pid, db_name))
            results[label] = {
                "value": json.loads(body) if label != "baseline_customer_read" else None,
                "p50_ms": round(statistics.median(single) * 1000, 2),
                "p99_ms": round(_common.percentile(single, 0.99) * 1000, 2),
                f"rps_{args.clients}_clients": round(rate, 1),
                "p50_ms_loaded": round(statistics.median(loaded) * 1000, 2),
                "p99_ms_loaded": round(_common.percentile(loaded, 0.99) * 1000, 2),
                **cpu,
            }
        results["p50_ratio_large_small"] = round(
            results["large"]["p50_ms"] / results["small"]["p50_ms"], 3)
        rps = f"rps_{args.clients}_clients"
        results["rps_ratio_large_baseline"] = round(
            results["large"][rps] / results["baseline_customer_read"][rps], 3)
        results["setup"] = {**setup, "load_average_at_end": os.getloadavg(),
                            "cpu_calibration_s_at_end": _common.cpu_calibration()}
        print(json.dumps(results, indent=2))
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
