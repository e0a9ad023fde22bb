from django.apps import AppConfig


class InvoicingConfig(AppConfig):
    name = "invoicing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from invoicing.selectors import unsettled_usage_amount

        try:
            from grants.selectors import UNSETTLED_USAGE_SOURCES
        except ImportError:  # credit ledger without the hook
            pass
        else:
            if unsettled_usage_amount not in UNSETTLED_USAGE_SOURCES:
                UNSETTLED_USAGE_SOURCES.append(unsettled_usage_amount)
        try:
            from grants.services import CREDIT_PURCHASE_HOOKS, CREDIT_REFUND_HOOKS
        except ImportError:  # credit ledger without the hooks
            pass
        else:
            from invoicing.services import credit_purchase_invoice_create, credit_purchase_refund

            if credit_purchase_invoice_create not in CREDIT_PURCHASE_HOOKS:
                CREDIT_PURCHASE_HOOKS.append(credit_purchase_invoice_create)
            if credit_purchase_refund not in CREDIT_REFUND_HOOKS:
                CREDIT_REFUND_HOOKS.append(credit_purchase_refund)
        try:
            from metering.locks import register_lock_checker
        except ImportError:  # metering without the hook
            return
        from invoicing.selectors import issued_usage_lock_reason

        register_lock_checker(issued_usage_lock_reason)
