"""Filter helpers shared by every list: strict timestamps and Orb's `created_at[op]`."""

import django_filters
from django import forms

from billing_project.api import parse_timestamp


class StrictTimestampFormField(forms.Field):
    def to_python(self, value):
        if value in (None, ""):
            return None
        try:
            return parse_timestamp(value)
        except ValueError as exc:
            # django-filter formats messages with `%`: the user's text goes in as a parameter.
            raise forms.ValidationError("%(error)s", params={"error": str(exc)}) from None


class TimestampFilter(django_filters.Filter):
    field_class = StrictTimestampFormField


class CreatedAtFilterSet(django_filters.FilterSet):
    """Base FilterSet giving `created_at[gte|gt|lt|lte]=` (Orb's spelling)."""

    locals().update({
        f"created_at[{op}]": TimestampFilter(field_name="created_at", lookup_expr=op)
        for op in ("gte", "gt", "lt", "lte")
    })
