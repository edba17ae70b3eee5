"""Item text from a template over an items table's fields.

A template is a Python format string over column names, e.g. ``"{title}. {author}"``. Null fields
render as empty strings, and the literal text just before an empty field is dropped with it
(``"{title}. {author}"`` with no author gives ``"Title"``, not ``"Title. "``). Items whose text is
empty after templating stay in the catalogue with an empty text:
:func:`xrec.catalogue.items.prepare_items` logs them and they get zero content vectors (they are
reached through CF only).
"""

from __future__ import annotations

import re
import string

import polars as pl

from xrec.errors import DataError

#: Punctuation and spaces trimmed around the rendered text (left by empty fields).
_DANGLING = " .,;:-|/"


def template_fields(template: str) -> list[str]:
    """Column names a template refers to, in order; :class:`DataError` for a malformed template."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DataError(f"text template {template!r}: {exc}") from exc
    fields = [name for _, name, spec, conv in parsed if name is not None]
    if not fields:
        raise DataError(f"text template {template!r} names no field; write fields as {{title}}")
    for name in fields:
        if not re.fullmatch(r"\w+", name):
            raise DataError(f"text template {template!r}: field {{{name}}} must be a plain column name")
    return fields


def item_texts(frame: pl.DataFrame, template: str | None, source: str = "items") -> pl.Series:
    """The item texts of an items table: ``template`` rendered (:func:`render_template`), or the
    table's ``text`` column when there is no template (None or ``""``); a String series named ``text``."""
    if template:
        return render_template(frame, template, source)
    if "text" not in frame.columns:
        raise DataError(f"{source}: no 'text' column and no [items] template or --template; give one over the "
                        f"table's fields (e.g. --template '{{{frame.columns[-1]}}}'); columns: {frame.columns}")
    return frame["text"].cast(pl.String).alias("text")


def render_template(frame: pl.DataFrame, template: str, source: str = "items") -> pl.Series:
    """The template rendered for every row of ``frame`` as a String series named ``text``."""
    fields = template_fields(template)
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        raise DataError(f"{source}: text template {template!r} names missing column(s) {missing}; "
                        f"the table has {frame.columns}")
    parts: list[pl.Expr] = []
    for literal, name, _, _ in string.Formatter().parse(template):
        if name is None:
            parts.append(pl.lit(literal))
            continue
        value = pl.col(name).cast(pl.String).fill_null("").str.strip_chars()
        parts.append(pl.when(value == "").then(pl.lit("")).otherwise(pl.lit(literal) + value))
    text = frame.select(pl.concat_str(parts).alias("text"))["text"]
    return text.str.strip_chars(_DANGLING).alias("text")
