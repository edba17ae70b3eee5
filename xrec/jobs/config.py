"""The main job's TOML configuration: a typed schema, a file, and ``section.key=value`` overrides.

:data:`SCHEMA` declares every key the main job reads, one line each: its type, range or choices,
its default (``REQUIRED`` for none) and, for paths, whether it must exist. :func:`load_config`
reads the file, applies the overrides and checks the whole result against the schema before any
stage runs: an unknown section or key, a wrong type, a value out of range or a path that does not
exist is a :class:`~xrec.errors.DataError` naming the file (or the ``--set``) and ``[section] key``.

Relative paths in a config file are relative to its top-level ``root`` (itself relative to the
file's folder; default: the file's folder); relative paths given as overrides are relative to the
working directory, and so is the default job's output folder (``./out``). Checked paths come back
absolute.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xrec.encoders.transformers_encoder import ALL_PRECISIONS
from xrec.errors import DataError

#: The bundled job definition: ``pipelines/default.toml``, shipped in the wheel as
#: ``xrec/pipelines/default.toml`` beside the samples it reads (``xrec/data``); in a checkout, the
#: repository's own.
DEFAULT = next((p for p in (Path(__file__).resolve().parents[1] / "pipelines" / "default.toml",
                            Path(__file__).resolve().parents[2] / "pipelines" / "default.toml") if p.is_file()),
               Path(__file__).resolve().parents[2] / "pipelines" / "default.toml")
REQUIRED = object()  #: default of a key that every config must set


@dataclass(frozen=True)
class Key:
    """One config key: ``kind`` is int, float, str, names (a list of strings), dir, file or out."""

    kind: str
    default: Any = REQUIRED  #: a value, a function returning one, or REQUIRED
    min: float | None = None
    choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None
    optional: bool = False  #: ``""`` is allowed and means "none" (str, dir and file keys)

    def allowed(self) -> tuple[str, ...] | None:
        return tuple(self.choices()) if callable(self.choices) else self.choices


def integer(default: Any = REQUIRED, *, min: int | None = None) -> Key:
    return Key("int", default, min=min)


def text(default: Any = REQUIRED, *, choices: tuple[str, ...] | None = None, optional: bool = False) -> Key:
    return Key("str", default, choices=choices, optional=optional)


def names(default: Any = REQUIRED, *, choices: Callable[[], Iterable[str]] | None = None) -> Key:
    return Key("names", default, choices=choices)


def directory(default: Any = REQUIRED, *, optional: bool = False) -> Key:
    """An existing folder (``optional``: or ``""``, none)."""
    return Key("dir", default, optional=optional)


def table_file(default: Any = REQUIRED) -> Key:
    """An existing file."""
    return Key("file", default)


def output(default: Any = REQUIRED) -> Key:
    """A folder that is created if missing."""
    return Key("out", default)


def _recommenders() -> tuple[str, ...]:
    from xrec.evaluation.recs import MODELS

    return tuple(MODELS)


#: The main job's stages in the order they run (``[job] stages`` picks among them).
STAGES = ("recommendations", "evaluation", "new_language", "topics", "book_topics", "neighbours", "latency")

#: Every section and key of the main job's config. Adding a key is one line here. The column keys
#: of ``[items]`` and ``[interactions]`` name columns of those tables (docs/own-catalogue.md).
SCHEMA: dict[str, dict[str, Key]] = {
    "output": {"dir": output("out")},
    "encoder": {"model": text("bundled"), "precision": text("auto", choices=ALL_PRECISIONS),
                "batch_size": integer(32, min=1)},
    "items": {"path": table_file(), "id": text("item_id"), "template": text("", optional=True),
              "lang": text("lang", optional=True), "metadata": names([])},
    "interactions": {"path": table_file(), "user": text("user_id"), "item": text("item_id"),
                     "weight": text("weight", optional=True), "timestamp": text("timestamp", optional=True)},
    "job": {"stages": names(list(STAGES), choices=lambda: STAGES)},
    "recommend": {"k": integer(10, min=1), "batch_size": integer(256, min=1),
                  "evaluate_models": names(_recommenders, choices=_recommenders)},
    "new_language": {"language": text("auto", optional=True)},
    "topics": {"sib200": directory("", optional=True), "train_lang": text("eng_Latn")},
    "neighbours": {"k": integer(5, min=1)},
    "latency": {"kinds": names(["exact", "hnsw"]), "queries": integer(500, min=1)},
}
#: Top-level keys (outside any section).
TOP_LEVEL: dict[str, Key] = {"root": text(".")}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a TOML config (default: :data:`DEFAULT`), apply ``section.key=value``
    overrides and check the result against :data:`SCHEMA` (see the module docs).

    Values of overrides are read as the key's type (``k=20``; lists as JSON, ``kinds=["exact"]``,
    or comma-separated, ``kinds=exact,hnsw``).
    """
    file = Path(path) if path else DEFAULT
    if not file.is_file():
        hint = "; this xrec was installed without its default job: pass --config FILE" if not path else ""
        raise DataError(f"{file}: config file not found{hint}")
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: invalid TOML ({exc})") from exc
    config: dict[str, Any] = {"_source": str(file)}
    origin: dict[tuple[str, str], str] = {}
    for name, value in raw.items():
        if name in TOP_LEVEL:
            config[name] = _check(TOP_LEVEL[name], value, f"{file}: {name}")
            continue
        if not isinstance(value, dict):
            raise DataError(f"{file}: unknown top-level key {name!r}; known: {', '.join(TOP_LEVEL)}")
        _known(name, None, str(file))
        for key, item in value.items():
            _known(name, key, str(file))
            config.setdefault(name, {})[key] = item
            origin[name, key] = str(file)
    base = (file.resolve().parent / config.get("root", ".")).resolve()
    bases: dict[tuple[str, str], Path] = {key: base for key in origin}
    if not path:  # the default job writes into the working directory (./out), wherever xrec is installed
        bases["output", "dir"] = Path.cwd()
    for item in overrides or []:
        dotted, sep, value = item.partition("=")
        section, dot, key = dotted.partition(".")
        if not sep or not dot or not key:
            raise DataError(f"override {item!r}: expected section.key=value")
        where = f"--set {item}"
        _known(section, key, where)
        config.setdefault(section, {})[key] = _parse(SCHEMA[section][key], value)
        origin[section, key] = where
        bases[section, key] = Path.cwd()
    return _validate(config, origin, bases, base)


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check a config dictionary (e.g. one built in code) against :data:`SCHEMA`; returns a copy
    with defaults filled in and paths absolute (relative ones: to the working directory)."""
    source = str(config.get("_source", "config"))
    origin: dict[tuple[str, str], str] = {}
    for section, keys in config.items():
        if section.startswith("_") or section in TOP_LEVEL:
            continue
        _known(section, None, source)
        if not isinstance(keys, dict):
            raise DataError(f"{source}: [{section}] must be a table of keys")
        for key in keys:
            _known(section, key, source)
            origin[section, key] = source
    copy = {s: dict(v) if isinstance(v, dict) else v for s, v in config.items()}
    return _validate(copy, origin, {}, Path.cwd())


def resolve(config: dict[str, Any], section: str, key: str, must_exist: bool = True) -> Path:
    """The path at ``config[section][key]`` of a checked config; checked to exist (again: a
    stage may run long after the check)."""
    path = Path(config[section][key])
    if must_exist and not path.exists():
        raise DataError(f"{config.get('_source', 'config')}: [{section}] {key}: {path} does not exist")
    return path


# ---------------------------------------------------------------------- checks
def _known(section: str, key: str | None, where: str) -> None:
    if section not in SCHEMA:
        raise DataError(f"{where}: unknown section [{section}]; known: {', '.join(SCHEMA)}")
    if key is not None and key not in SCHEMA[section]:
        raise DataError(f"{where}: unknown key [{section}] {key}; known: {', '.join(SCHEMA[section])}")


def _parse(spec: Key, raw: str) -> Any:
    """An override's text as the key's type (checked later with the file's values)."""
    if spec.kind == "names" and not raw.lstrip().startswith("["):
        return [part.strip() for part in raw.split(",") if part.strip()]
    if spec.kind in ("str", "dir", "file", "out") and not raw.startswith('"'):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _validate(config: dict[str, Any], origin: dict[tuple[str, str], str],
              bases: dict[tuple[str, str], Path], base: Path) -> dict[str, Any]:
    """Fill in defaults and check every key; relative paths: ``bases`` per key, else ``base``."""
    source = str(config.get("_source", "config"))
    for given in (True, False):  # the values given first, then the missing ones
        for section, keys in SCHEMA.items():
            values = config.setdefault(section, {})
            for key, spec in keys.items():
                if (key in values) != given:
                    continue
                where = origin.get((section, key), source)
                if not given:
                    if spec.default is REQUIRED:
                        raise DataError(f"{where}: missing [{section}] {key}")
                    default = spec.default() if callable(spec.default) else spec.default
                    values[key] = json.loads(json.dumps(default))  # a fresh copy
                values[key] = _check(spec, values[key], f"{where}: [{section}] {key}",
                                     bases.get((section, key), base), source == str(DEFAULT))
    return config


def _check(spec: Key, value: Any, name: str, base: Path | None = None, default_file: bool = False) -> Any:
    """``value`` checked against ``spec`` (paths made absolute); DataError naming ``name``."""
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(f"{name} must be an integer, got {value!r}")
        if spec.min is not None and value < spec.min:
            raise DataError(f"{name} must be at least {spec.min:g}, got {value}")
        return value
    if spec.kind == "names":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise DataError(f"{name} must be a list of names, got {value!r}")
        allowed = spec.allowed()
        for item in value if allowed is not None else ():
            if allowed is not None and item not in allowed:
                raise DataError(f"{name}: {item!r} is not one of {', '.join(allowed)}")
        return value
    if spec.optional and value == "":
        return value
    if not isinstance(value, str) or not value:
        raise DataError(f"{name} must be a non-empty string, got {value!r}")
    if spec.kind == "str":
        allowed = spec.allowed()
        if allowed is not None and value not in allowed:
            raise DataError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value
    path = Path(value).expanduser()
    path = path if path.is_absolute() else (base or Path.cwd()) / path
    if spec.kind == "dir" and not path.is_dir():
        hint = (" (the default config runs on the sample data shipped with xrec; pass --config "
                "for your own data)") if default_file else ""
        raise DataError(f"{name} = {value!r}: {path} does not exist or is not a folder{hint}")
    if spec.kind == "file" and not path.is_file():
        hint = (" (the default config runs on the sample data of a checkout of xrec; pass --config "
                "or --items and --interactions for your own data)") if default_file else ""
        raise DataError(f"{name} = {value!r}: {path} does not exist or is not a file{hint}")
    if spec.kind == "out" and path.exists() and not path.is_dir():
        raise DataError(f"{name} = {value!r}: {path} exists and is not a folder")
    return str(path)
