import factory

from ledgers.models import Customer


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Sequence(lambda n: f"Customer {n}")
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    external_customer_id = factory.Sequence(lambda n: f"ext-{n}")
    currency = "USD"
    timezone = "UTC"
