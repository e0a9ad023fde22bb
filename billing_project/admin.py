"""The confirmation page every staff action uses (modelled on Django's delete confirmation)."""

from django.contrib import messages
from django.contrib.admin import helpers
from django.db import transaction
from django.template.response import TemplateResponse

from billing_project.errors import DomainError

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


def confirm_action(modeladmin, request, queryset, *, action: str, title: str, form_class, run,
                   intro: str = "", lines=None, submit_label: str = "Yes, I’m sure"):
    """A staff action: the confirmation page, then on `confirm` ``run(obj, cleaned_data, user)``
    per object, one transaction each; domain errors are reported per object, others raise."""
    form = form_class(request.POST if "confirm" in request.POST else None)
    if "confirm" in request.POST and form.is_valid():
        done, failed = 0, []
        for obj in queryset:
            try:
                with transaction.atomic():
                    run(obj, form.cleaned_data, request.user)
                done += 1
            except DomainError as exc:
                failed.append(f"{obj}: {exc.detail}")
        if done:
            modeladmin.message_user(request, f"{title}: {done} done.", messages.SUCCESS)
        for failure in failed:
            modeladmin.message_user(request, failure, messages.ERROR)
        return None
    return render_confirmation(modeladmin, request, queryset, form=form,
                               title=f"{title}: are you sure?", action=action, intro=intro,
                               lines=lines,
                               submit_label=submit_label)
