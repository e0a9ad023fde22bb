from django.apps import AppConfig


class MeteringConfig(AppConfig):
    name = "metering"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from ledgers.signals import customer_created

        customer_created.connect(_attribute_events, dispatch_uid="metering.attribute_events")


def _attribute_events(sender, customer, **kwargs):
    from metering.services import events_attribute_to_customer

    events_attribute_to_customer(customer=customer)
