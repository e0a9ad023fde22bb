"""Prepared statements on Django's connection, for the few hot-path queries whose planning
costs as much as running them."""

from __future__ import annotations

import psycopg
from django.db import connection


def execute_prepared(sql: str, params, *, fetch: bool = False, binary: bool = False
                     ) -> list | None:
    """Run ``sql`` (``%s`` / ``%(name)s`` placeholders) on Django's connection, inside its
    current transaction, with server-side binding and a prepared statement: planned once per
    connection and parameter types instead of once per call, and no client-side quoting of
    long parameter arrays. Errors are wrapped as Django's (``IntegrityError``, ...).

    ``binary``: results in binary format, loaded by psycopg's C loaders (timestamps, numerics
    several times faster than Django's text loaders); JSON must then be selected as text, as
    ``columns`` does."""
    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, prepare=True, binary=binary)
            return cursor.fetchall() if fetch else None


_CONVERTERS: dict[type, list] = {}


def columns(model, alias: str | None = None) -> str:
    """The model's concrete columns in field order, for ``model_from_row``; JSON columns as
    text (what Django's JSON fields decode, in either result format)."""
    prefix = f'{alias}.' if alias else ""
    return ", ".join(
        f'{prefix}"{f.column}"::text' if f.get_internal_type() == "JSONField"
        else f'{prefix}"{f.column}"' for f in model._meta.concrete_fields)


def model_from_row(model, values):
    """An instance from a row of ``columns(model)`` read by ``execute_prepared``, with the
    field converters Django's own queries would apply (JSON, ...)."""
    converters = _CONVERTERS.get(model)
    if converters is None:
        converters = _CONVERTERS[model] = [
            (index, found) for index, f in enumerate(model._meta.concrete_fields)
            if (found := f.get_db_converters(connection))]
    if converters:
        values = list(values)
        for index, field_converters in converters:
            value = values[index]
            for converter in field_converters:
                value = converter(value, None, connection)
            values[index] = value
    return model.from_db(connection.alias, None, values)
