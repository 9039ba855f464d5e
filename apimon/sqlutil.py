"""Where SQL is made: identifier quoting, Jinja templates from `sql/`, and a parse check.

Every identifier that reaches SQL passes through :func:`quote_ident`; every value travels
as a bind parameter. Templates shape the statement (which columns, which joins), never
its data.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import sqlglot
import sqlglot.errors

from apimon.errors import ApimonError

log = logging.getLogger(__name__)


def quote_ident(name: str) -> str:
    """Quote one SQL identifier so that any text is an ordinary name: `a"b` -> `"a""b"`."""
    if not isinstance(name, str) or name == "":
        raise ApimonError(f"invalid SQL name {name!r}: names must be non-empty text")
    if "\x00" in name:
        raise ApimonError(f"invalid SQL name {name!r}: names cannot contain a NUL character")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote a text literal, for the few places SQL takes no bind parameter (DDL comments)."""
    if "\x00" in value:
        raise ApimonError(f"invalid SQL text {value!r}: text cannot contain a NUL character")
    return "'" + value.replace("'", "''") + "'"


def sql_dir() -> Path:
    """The folder of SQL templates: inside the installed package, else the source checkout."""
    packaged = Path(__file__).resolve().parent / "sql"
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parent.parent / "sql"
    if source.is_dir():
        return source
    raise ApimonError(
        f"apimon's SQL templates are missing (looked in {packaged} and {source}): reinstall apimon"
    )


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(sql_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["ident"] = quote_ident
    env.filters["literal"] = quote_literal
    env.filters["list_literal"] = lambda items: "[" + ", ".join(map(quote_literal, items)) + "]"
    return env


def render(template: str, **context: Any) -> str:
    """Render one template of `sql/` with the given context."""
    return _environment().get_template(template).render(**context)


def check_sql(sql: str, *, dialect: str = "duckdb") -> None:
    """Parse rendered SQL with sqlglot before it runs; a failure is a bug in a template."""
    try:
        sqlglot.parse(sql, read=dialect)
    except sqlglot.errors.ParseError as exc:
        raise ApimonError(f"rendered SQL does not parse ({exc}); this is a bug in apimon") from exc


def render_checked(template: str, **context: Any) -> str:
    """Render a template and parse the result with sqlglot."""
    sql = render(template, **context)
    check_sql(sql)
    return sql


def execute(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[Any] | dict[str, Any] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Run one statement with bind parameters, logging it at debug level."""
    log.debug("SQL: %s | params=%r", sql, params)
    if params is None:
        return con.execute(sql)
    return con.execute(sql, params)
