"""The pipeline's TOML configuration: defaults from a file, overrides from the command line."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

from xrec.errors import DataError

DEFAULT = Path(__file__).with_name("default.toml")
ROOT = DEFAULT.parent.parent


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a TOML config (default: ``pipelines/default.toml``) and apply ``section.key=value`` overrides.

    Values of overrides are parsed as JSON where possible (``k=20``, ``models=["als"]``), else kept
    as strings. Relative paths in the config are resolved against the repository root.
    """
    file = Path(path) if path else DEFAULT
    if not file.is_file():
        raise DataError(f"{file}: config file not found")
    try:
        config = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{file}: invalid TOML ({exc})") from exc
    config = copy.deepcopy(config)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise DataError(f"override {item!r}: expected section.key=value")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        config.setdefault(section, {})[name] = value
    config["_source"] = str(file)
    return config


def resolve(config: dict[str, Any], section: str, key: str, must_exist: bool = True) -> Path:
    """The path at ``config[section][key]``, relative to the repository root; checked to exist."""
    try:
        raw = config[section][key]
    except KeyError as exc:
        raise DataError(f"{config.get('_source', 'config')}: missing [{section}] {key}") from exc
    path = Path(raw)
    if not path.is_absolute():
        path = ROOT / path
    if must_exist and not path.exists():
        raise DataError(f"{config.get('_source', 'config')}: [{section}] {key} = {raw!r}: {path} does not exist")
    return path
