"""The beat schedule lives in the database (django-celery-beat), editable in the admin."""

import json

from billing_project import jobs


def ensure_schedules() -> list[str]:
    """One PeriodicTask per registered job; existing rows (maybe edited by staff) are kept."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    created = []
    for job in jobs.load_jobs().values():
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=job.every_seconds, period=IntervalSchedule.SECONDS)
        _, was_created = PeriodicTask.objects.get_or_create(
            name=f"job:{job.name}",
            defaults={"task": "billing.run_job", "interval": interval,
                      "args": json.dumps([job.name]), "description": job.description},
        )
        if was_created:
            created.append(job.name)
    return created
