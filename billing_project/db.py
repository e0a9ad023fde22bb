"""Hot-path database access: prepared statements on Django's connection (for the few queries
whose parsing or client-side quoting costs as much as running them) and fast loading of their
rows into model instances."""

from __future__ import annotations

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import signals
from django.db.models.base import ModelState


def execute_prepared(sql: str, params, *, fetch: bool = False, binary: bool = False
                     ) -> list | None:
    """Run ``sql`` (``%s`` / ``%(name)s`` placeholders) on Django's connection, inside its
    current transaction, with server-side binding and a prepared statement: parsed once per
    connection and parameter types, and no client-side quoting of long parameter arrays.
    PostgreSQL still re-plans with the actual values when its generic plan looks worse
    (plan_cache_mode = auto). Errors are wrapped as Django's (``IntegrityError``, ...).

    ``binary``: results in binary format, loaded by psycopg's C loaders (timestamps, numerics
    several times faster than Django's text loaders); JSON must then be selected as text, as
    ``columns`` does."""
    db = connections[DEFAULT_DB_ALIAS]  # resolved once, not through the proxy per attribute
    db.ensure_connection()
    db.validate_no_broken_transaction()
    with db.wrap_database_errors:
        with psycopg.Cursor(db.connection) as cursor:
            cursor.execute(sql, params, prepare=True, binary=binary)
            return cursor.fetchall() if fetch else None


def columns(model, alias: str | None = None) -> str:
    """The model's concrete columns in field order, for ``model_from_row``; JSON columns as
    text (what Django's JSON fields decode, in either result format)."""
    prefix = f'{alias}.' if alias else ""
    return ", ".join(
        f'{prefix}"{f.column}"::text' if f.get_internal_type() == "JSONField"
        else f'{prefix}"{f.column}"' for f in model._meta.concrete_fields)


_LOADERS: dict[type, tuple] = {}


def _loader(model) -> tuple[list[str], list]:
    loader = _LOADERS.get(model)
    if loader is None:
        fields = model._meta.concrete_fields
        converters = [(index, field_converters) for index, f in enumerate(fields)
                      if (field_converters := f.get_db_converters(connection))]
        loader = _LOADERS[model] = ([f.attname for f in fields], converters)
    return loader


def model_from_values(model, values, *, alias: str = DEFAULT_DB_ALIAS):
    """What ``model.from_db(alias, None, values)`` returns (values in concrete field order),
    without ``Model.__init__``'s per-field work: the attributes are set directly. Models
    with init signals take the regular path."""
    if signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
        return model.from_db(alias, None, values)
    obj = model.__new__(model)
    state = ModelState()
    state.adding = False
    state.db = alias
    obj._state = state
    obj.__dict__.update(zip(_loader(model)[0], values, strict=True))
    return obj


_NEW: dict[type, list] = {}


def new_instance(model, **values):
    """``model(**values)`` (an unsaved instance, defaults for the fields not given) for hot
    paths that build many: each given value is set once, related objects through their
    descriptor (so ``entry.credit_block`` stays cached), without ``Model.__init__``'s argument
    handling. Only field names are accepted. Models with init signals take the regular path."""
    if signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
        return model(**values)
    plan = _NEW.get(model)
    if plan is None:
        plan = _NEW[model] = [(f.name, f.attname, f.is_relation, f.get_default)
                              for f in model._meta.concrete_fields]
    obj = model.__new__(model)
    obj._state = ModelState()
    data = obj.__dict__
    given = 0
    for name, attname, is_relation, default in plan:
        if name in values:
            given += 1
            value = values[name]
            if is_relation and value is not None and name != attname:
                setattr(obj, name, value)  # the descriptor sets the id and the cache
                continue
        elif attname in values:
            given += 1
            value = values[attname]
        else:
            value = default()  # as Model.__init__: the default, else None or ""
        data[attname] = value
    if given != len(values):
        unknown = set(values) - {n for p in plan for n in p[:2]}
        raise TypeError(f"{model.__name__} got unexpected field(s): {sorted(unknown)}")
    return obj


def models_from_rows(model, rows) -> list:
    """Instances from rows of ``columns(model)`` (each row may carry extra trailing values,
    ignored) read by ``execute_prepared``, with the field converters Django's own queries
    would apply (JSON, ...)."""
    attnames, converters = _loader(model)
    width = len(attnames)
    db = connections[DEFAULT_DB_ALIAS]  # resolved once, not through the proxy per value
    out = []
    for row in rows:
        values = list(row[:width])
        for index, field_converters in converters:
            value = values[index]
            for converter in field_converters:
                value = converter(value, None, db)
            values[index] = value
        out.append(model_from_values(model, values))
    return out


def model_from_row(model, values):
    """One instance from a row of ``columns(model)`` (see ``models_from_rows``)."""
    return models_from_rows(model, [values])[0]
