import json

from django.core.management.base import BaseCommand, CommandError

from billing_project import jobs
from billing_project.api import parse_timestamp


class Command(BaseCommand):
    help = "Runs one scheduled job once (API.md §7). Without NAME, lists the jobs."

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?")
        parser.add_argument("--as-of", dest="as_of", help="RFC 3339 timestamp (default: now)")

    def handle(self, *args, name=None, as_of=None, **options):
        registry = jobs.load_jobs()
        if not name:
            for job in registry.values():
                self.stdout.write(f"{job.name:28} every {job.every_seconds:>5}s  "
                                  f"{job.description.splitlines()[0] if job.description else ''}")
            return
        if name not in registry:
            raise CommandError(f"Unknown job '{name}'. Known jobs: {', '.join(registry)}")
        try:
            when = parse_timestamp(as_of) if as_of else None
        except ValueError as exc:
            raise CommandError(f"--as-of: {exc}") from None
        summary = jobs.run(name, as_of=when)
        self.stdout.write(json.dumps({"job": name, **(summary or {})}, default=str))
