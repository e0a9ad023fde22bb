from django.dispatch import Signal

# Sent inside the creating transaction; metering attributes earlier events with the same
# external_customer_id to the new customer.
customer_created = Signal()
