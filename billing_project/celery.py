import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")

app = Celery("billing_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="billing.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job_task(name: str, as_of: str | None = None) -> dict:
    """Runs one registered job (billing_project.jobs); beat schedules this task per job."""
    from billing_project import jobs
    from billing_project.api import parse_timestamp

    return jobs.run(name, as_of=parse_timestamp(as_of) if as_of else None)
