"""The registry of scheduled jobs (API.md §7).

Apps register a job with `@job("name", schedule=...)` in their `jobs.py`; the generic Celery task
`billing.run_job`, the `run_job` management command and the beat schedule all use this registry.
A job is a function `fn(*, as_of: datetime) -> dict` (a short summary) that is idempotent.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module

from django.apps import apps


@dataclass(frozen=True)
class Job:
    name: str
    func: Callable[..., dict]
    every_seconds: int
    description: str


_registry: dict[str, Job] = {}


def job(name: str, *, every_seconds: int, description: str = ""):
    def register(func):
        _registry[name] = Job(name=name, func=func, every_seconds=every_seconds,
                              description=description or (func.__doc__ or "").strip())
        return func

    return register


def load_jobs() -> dict[str, Job]:
    for config in apps.get_app_configs():
        try:
            import_module(f"{config.name}.jobs")
        except ModuleNotFoundError as exc:
            if exc.name != f"{config.name}.jobs":
                raise
    return dict(sorted(_registry.items()))


def get_job(name: str) -> Job:
    jobs = load_jobs()
    if name not in jobs:
        raise KeyError(name)
    return jobs[name]


def run(name: str, *, as_of: datetime | None = None) -> dict:
    from django.utils import timezone

    return get_job(name).func(as_of=as_of or timezone.now())
