"""Errors that mean "the input or the configuration is wrong": shown as one line, never a traceback."""

from __future__ import annotations

from kd.data.errors import DataFormatError
from kd.precision import UnsupportedPrecisionError


class ConfigError(ValueError):
    """An impossible or inconsistent configuration; the message names the offending key."""


USER_ERRORS: tuple[type[BaseException], ...] = (DataFormatError, UnsupportedPrecisionError, ConfigError,
                                                FileNotFoundError)
