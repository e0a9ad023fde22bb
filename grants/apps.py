from django.apps import AppConfig


class GrantsConfig(AppConfig):
    name = "grants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from grants import receivers  # noqa: F401 - connects the signal receivers
