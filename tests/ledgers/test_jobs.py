import json
from datetime import timedelta
from io import StringIO

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from billing_project.celery import app, run_job_task
from billing_project.schedules import ensure_schedules
from ledgers.models import IdempotencyRecord


def _old_record(key: str, age: timedelta):
    return IdempotencyRecord.objects.create(scope="s", key=key, fingerprint="f",
                                            created_at=timezone.now() - age)


@pytest.mark.django_db
def test_run_job_lists_jobs():
    out = StringIO()
    call_command("run_job", stdout=out)
    assert "expire_idempotency_keys" in out.getvalue()


@pytest.mark.django_db
def test_run_job_unknown_name_fails_clearly():
    with pytest.raises(CommandError, match="Unknown job 'nope'"):
        call_command("run_job", "nope")


@pytest.mark.django_db
def test_run_job_with_as_of_is_idempotent():
    _old_record("a", timedelta(hours=30))
    _old_record("b", timedelta(hours=1))
    out = StringIO()
    as_of = (timezone.now() + timedelta(hours=2)).isoformat()
    call_command("run_job", "expire_idempotency_keys", "--as-of", as_of, stdout=out)
    assert json.loads(out.getvalue()) == {"job": "expire_idempotency_keys", "deleted": 1}
    call_command("run_job", "expire_idempotency_keys", "--as-of", as_of, stdout=StringIO())
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["b"]


@pytest.mark.django_db
def test_run_job_rejects_naive_as_of():
    with pytest.raises(CommandError, match="offset"):
        call_command("run_job", "expire_idempotency_keys", "--as-of", "2026-01-01T00:00:00")


@pytest.mark.django_db
def test_schedules_are_stored_in_the_database_once():
    ensure_schedules()
    ensure_schedules()
    task = PeriodicTask.objects.get(name="job:expire_idempotency_keys")
    assert task.task == "billing.run_job"
    assert json.loads(task.args) == ["expire_idempotency_keys"]
    assert PeriodicTask.objects.filter(name__startswith="job:").count() == \
        len(__import__("billing_project.jobs", fromlist=["load_jobs"]).load_jobs())


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_real_worker_runs_a_job_from_the_configured_broker():
    _old_record("stale", timedelta(days=2))
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        run_job_task.delay("expire_idempotency_keys")
        deadline = timezone.now() + timedelta(seconds=20)
        while IdempotencyRecord.objects.exists() and timezone.now() < deadline:
            import time

            time.sleep(0.1)
    assert not IdempotencyRecord.objects.exists()
