"""record_action: the audit trail every staff or API write calls, inside its transaction."""

from billing_project.db import new_instance
from ledgers.models import ApiKey, AuditLog


def actor_label(actor) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    if isinstance(actor, ApiKey):
        return f"api_key:{actor.name}"
    api_key = getattr(actor, "api_key", None)
    if isinstance(api_key, ApiKey):
        return f"api_key:{api_key.name}"
    username = getattr(actor, "get_username", None)
    if username:
        return f"user:{username()}"
    return str(actor)


def audit_record(*, actor, action: str, target, reason: str = "", data: dict | None = None,
                 ) -> AuditLog:
    """The unsaved audit row for an action (for writers that insert it in their own statement).

    actor: a Django user, an ApiKey (or the API's request.user), a label, or None (system).
    target: a model instance, or a (type, id) pair.
    """
    if isinstance(target, tuple):
        target_type, target_id = target
    else:
        target_type = f"{target._meta.app_label}.{target._meta.model_name}"
        target_id = str(target.pk)
    api_key = actor if isinstance(actor, ApiKey) else getattr(actor, "api_key", None)
    user = actor if getattr(actor, "_meta", None) and not isinstance(actor, ApiKey) else None
    return new_instance(
        AuditLog, actor=actor_label(actor), user=user,
        api_key=api_key if isinstance(api_key, ApiKey) else None,
        action=action, target_type=target_type, target_id=target_id, reason=reason or "",
        data=data or {},
    )


def record_action(*, actor, action: str, target, reason: str = "", data: dict | None = None,
                  ) -> AuditLog:
    """Writes the audit row for an action, inside the caller's transaction."""
    record = audit_record(actor=actor, action=action, target=target, reason=reason, data=data)
    record.save(force_insert=True)
    return record
