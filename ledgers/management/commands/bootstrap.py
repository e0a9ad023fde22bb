"""Idempotent setup for `make run`: schedules, demo data, an admin user and an API key."""

import secrets
from importlib import import_module
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from billing_project.schedules import ensure_schedules
from ledgers.selectors import api_key_for_raw_key
from ledgers.services import api_key_create

DEMO_APPS = ("ledgers", "metering", "grants", "entitlements", "invoicing")


class Command(BaseCommand):
    help = "Ensures beat schedules, demo data, an admin user and a demo API key; prints logins."

    def add_arguments(self, parser):
        parser.add_argument("--no-demo", action="store_true", help="Skip demo data.")

    def handle(self, *args, no_demo=False, **options):
        secrets_dir = Path(settings.LOCAL_DIR)
        secrets_dir.mkdir(parents=True, exist_ok=True)
        created = ensure_schedules()
        if created:
            self.stdout.write(f"Scheduled jobs: {', '.join(created)}")
        if not no_demo:
            for app in DEMO_APPS:
                try:
                    module = import_module(f"{app}.demo")
                except ModuleNotFoundError as exc:
                    if exc.name != f"{app}.demo":
                        raise
                    continue
                with transaction.atomic():
                    module.load(stdout=self.stdout)
        password = self._admin_password(secrets_dir / "admin-password")
        raw_key = self._api_key(secrets_dir / "demo-api-key")
        self.stdout.write("Admin login:  admin / " + password)
        self.stdout.write("API key:      " + raw_key)

    def _admin_password(self, path: Path) -> str:
        user_model = get_user_model()
        user = user_model.objects.filter(username="admin").first()
        password = path.read_text().strip() if path.exists() else ""
        if user is None or not password or not user.check_password(password):
            password = password or secrets.token_urlsafe(12)
            if user is None:
                user_model.objects.create_superuser("admin", "admin@example.com", password)
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
            path.write_text(password)
            path.chmod(0o600)
        return password

    def _api_key(self, path: Path) -> str:
        raw = path.read_text().strip() if path.exists() else ""
        if not raw or api_key_for_raw_key(raw_key=raw) is None:
            _, raw = api_key_create(name="demo")
            path.write_text(raw)
            path.chmod(0o600)
        return raw
