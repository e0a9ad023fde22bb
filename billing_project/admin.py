"""The confirmation page every staff action uses (modelled on Django's delete confirmation)."""

from django.contrib.admin import helpers
from django.template.response import TemplateResponse

CONFIRM_TEMPLATE = "admin/confirm_action.html"


def render_confirmation(modeladmin, request, queryset, *, form, title: str,
                        action: str | None = None, intro: str = "", lines=None,
                        submit_label: str = "Yes, I’m sure"):
    """The intermediate page: `lines` (default: each object) and `form` (with its reason).

    The form posts back with `confirm=yes` to the same admin action.
    """
    return TemplateResponse(request, CONFIRM_TEMPLATE, {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "lines": [str(obj) for obj in queryset] if lines is None else lines,
        "form": form,
        "opts": modeladmin.model._meta,
        "action": action or request.POST.get("action"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)],
        "submit_label": submit_label,
        "media": modeladmin.media,
    })
