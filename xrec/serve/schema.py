"""Request validation for ``xrec serve``: JSON bodies checked field by field.

Every failure is a :class:`RequestError` with the HTTP status and the name of the field at fault
(``k``, ``ids[2]``, ``languages``), which the app returns as ``{"error": ..., "field": ...}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from xrec.catalogue.ids import id_value
from xrec.errors import shown

#: Largest request body accepted (bytes).
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask for (``xrec serve`` options)."""

    max_k: int = 1000
    max_text_chars: int = 2000
    max_texts: int = 256
    max_ids: int = 256


class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, a message and the ``field`` at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": str(self)}
        if self.field is not None:
            out["field"] = self.field
        return out


def parse_body(raw: bytes, max_depth: int = 32) -> dict[str, Any]:
    """The JSON object of a request body; 413 when too large, 400 when not a JSON object, nested
    deeper than ``max_depth`` or holding a lone surrogate (``"\\ud800"``: not text)."""
    if len(raw) > MAX_BODY:
        raise RequestError(413, f"request body of {len(raw)} bytes exceeds the {MAX_BODY}-byte limit")
    if not raw.strip():
        raise RequestError(400, "empty request body; expected a JSON object")
    try:
        body = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"request body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc.msg} "
                                f"(line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise RequestError(400, f"request body is nested more than {max_depth} levels deep") from None
    if not isinstance(body, dict):
        raise RequestError(400, f"request body is a JSON {type(body).__name__}, expected an object")
    _check_values(body, max_depth)
    return body


def _check_values(body: Any, max_depth: int) -> None:
    """400 for nesting deeper than ``max_depth`` or a string that is not valid Unicode text."""
    stack = [(body, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if depth > max_depth:
            raise RequestError(400, f"request body is nested more than {max_depth} levels deep")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            name = key.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(key, str) else key
            where = f"{path}.{name}" if isinstance(value, dict) else f"{path}[{name}]"
            for text in ((key, item) if isinstance(value, dict) else (item,)):
                if isinstance(text, str) and not _is_text(text):
                    raise RequestError(400, f"{where.lstrip('.')}: a string holds a lone surrogate "
                                            "(\\ud800-\\udfff escape); send Unicode text", where.lstrip("."))
            if isinstance(item, dict | list):
                stack.append((item, depth + 1, where))


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Fields:
    """Typed access to a request's fields; unknown fields are refused by :meth:`done`."""

    def __init__(self, body: dict[str, Any], allowed: tuple[str, ...]) -> None:
        extra = sorted(set(body) - set(allowed))
        if extra:
            raise RequestError(422, f"unknown field {extra[0]!r}; this endpoint takes "
                                    f"{', '.join(allowed)}", extra[0])
        self.body = body

    def has(self, name: str) -> bool:
        return self.body.get(name) is not None

    def one_of(self, *names: str) -> str:
        """The single field of ``names`` present (422 when none or several are)."""
        present = [n for n in names if self.has(n)]
        if len(present) != 1:
            what = "none" if not present else " and ".join(present)
            raise RequestError(422, f"give exactly one of {', '.join(names)} (got {what})",
                               present[1] if len(present) > 1 else names[0])
        return present[0]

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise RequestError(422, f"{name} must be an integer, got {shown(value)}", name)
        if not low <= value <= high:
            raise RequestError(422, f"{name}={shown(value)} is out of range [{low}, {high}]", name)
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.body.get(name, default)
        if not isinstance(value, bool):
            raise RequestError(422, f"{name} must be true or false, got {shown(value)}", name)
        return value

    def text(self, name: str, limit: int, *, default: str | None = None) -> str | None:
        value = self.body.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise RequestError(422, f"{name} must be a string, got {type(value).__name__}", name)
        if len(value) > limit:
            raise RequestError(422, f"{name} has {len(value)} characters, the limit is {limit}", name)
        return value

    def texts(self, name: str, limit: int, max_items: int) -> list[str]:
        values = self._list(name, max_items)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise RequestError(422, f"{name}[{i}] must be a string, got {type(value).__name__}",
                                   f"{name}[{i}]")
            if len(value) > limit:
                raise RequestError(422, f"{name}[{i}] has {len(value)} characters, the limit is "
                                        f"{limit}", f"{name}[{i}]")
        return values

    def languages(self, name: str) -> list[str] | None:
        if not self.has(name):
            return None
        values = self._list(name, 10_000)
        for i, value in enumerate(values):
            if not isinstance(value, str) or not value or len(value) > 64:
                raise RequestError(422, f"{name}[{i}] must be a language code, got {shown(value)}",
                                   f"{name}[{i}]")
        return list(dict.fromkeys(self.language(value, f"{name}[{i}]") for i, value in enumerate(values)))

    def language_text(self, name: str) -> str | None:
        """An optional single language code field (``lang``), normalised."""
        value = self.text(name, 64)
        return None if value is None else self.language(value, name)

    @staticmethod
    def language(value: str, field: str) -> str:
        """``value`` normalised (:func:`xrec.catalogue.languages.normalise`); 422 naming ``field`` if unknown."""
        from xrec.catalogue.languages import normalise
        from xrec.errors import DataError

        try:
            return normalise(value, field)
        except DataError as exc:
            raise RequestError(422, str(exc), field) from None

    def ids(self, name: str, integer: bool, max_items: int) -> list[int | str]:
        values = self._list(name, max_items)
        return [self.id_value(value, f"{name}[{i}]", integer) for i, value in enumerate(values)]

    @staticmethod
    def id_value(value: Any, field: str, integer: bool) -> int | str:
        """One id by the id rule (:mod:`xrec.catalogue.ids`) in the catalogue's type; 422 naming the field."""
        try:
            return id_value(value, integer)
        except ValueError as exc:
            raise RequestError(422, f"{field}: {exc}", field) from None

    def choice(self, name: str, options: tuple[str, ...], default: str) -> str:
        value = self.body.get(name, default)
        if value not in options:
            raise RequestError(422, f"{name} must be one of {', '.join(options)}, got {shown(value)}", name)
        return value

    def _list(self, name: str, max_items: int) -> list[Any]:
        value = self.body.get(name)
        if not isinstance(value, list):
            raise RequestError(422, f"{name} must be a list, got {type(value).__name__}", name)
        if not value:
            raise RequestError(422, f"{name} is empty", name)
        if len(value) > max_items:
            raise RequestError(422, f"{name} has {len(value)} entries, the limit is {max_items}", name)
        return value
