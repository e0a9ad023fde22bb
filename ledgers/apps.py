from django.apps import AppConfig


class LedgersConfig(AppConfig):
    name = "ledgers"
    verbose_name = "Customers and ledgers"
    default_auto_field = "django.db.models.BigAutoField"
