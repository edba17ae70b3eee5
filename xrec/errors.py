"""Exceptions raised by xrec. Every message names the file, row, column or field at fault."""

from typing import Any


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters: what a message echoes of given input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class XrecError(Exception):
    """Base class of every error xrec raises on purpose."""


class DataError(XrecError, ValueError):
    """Input data is malformed: a missing column, a bad row, a duplicate id, an unknown value."""


class ArtifactError(XrecError):
    """A saved artifact is missing, truncated, corrupted, or made for another model or dimension."""


class ModelError(XrecError):
    """A model directory or weights file cannot be read or is of the wrong format."""


class DeviceError(XrecError):
    """A device was asked for that this machine lacks (``cuda`` without a CUDA GPU) or is unknown."""


class WriteError(XrecError, OSError):
    """An output cannot be written: its directory cannot be made, is read-only, or the disk is full."""
