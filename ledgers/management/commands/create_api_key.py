from django.core.management.base import BaseCommand, CommandError

from billing_project.errors import DomainError
from ledgers.services import api_key_create


class Command(BaseCommand):
    help = "Creates an API key and prints the raw key as the last line (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", default="ingest,read,write",
                            help="Comma-separated: ingest,read,write (default: all three)")

    def handle(self, *args, name, scopes, **options):
        try:
            key, raw = api_key_create(name=name, scopes=[s.strip() for s in scopes.split(",")
                                                         if s.strip()])
        except DomainError as exc:
            raise CommandError(exc.detail) from None
        self.stdout.write(
            f"Created API key '{key.name}' ({key.prefix}) scopes={','.join(key.scopes)}")
        self.stdout.write(raw)
