"""kd's one errors module: errors that mean "the input or the configuration is wrong".

They are shown as one line on stderr (``exit_on_user_error``), never as a traceback:

| error                       | raised when                                                        |
|-----------------------------|--------------------------------------------------------------------|
| ``DataFormatError``         | an input file is malformed; names ``<file>:<line>: <problem>``      |
| ``ConfigError``             | a config value is wrong or impossible; names the key               |
| ``UnsupportedPrecisionError`` | a precision cannot run on the chosen device; names the alternatives |
| ``FileNotFoundError``       | a configured file or folder does not exist                          |
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


class DataFormatError(ValueError):
    """Raised when an input file is malformed.

    The message reads ``<path>:<line>: <problem>`` (``line`` is 1-based; ``None`` when the problem is
    about the file as a whole), so a user can open the file at the right place.
    """

    def __init__(self, path: str | os.PathLike, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class ConfigError(ValueError):
    """An impossible or inconsistent configuration; the message names the offending key."""


class UnsupportedPrecisionError(ValueError):
    """A precision that cannot run on the chosen device; the message names the working alternatives."""


USER_ERRORS: tuple[type[BaseException], ...] = (DataFormatError, UnsupportedPrecisionError, ConfigError,
                                                FileNotFoundError)


@contextlib.contextmanager
def exit_on_user_error(prog: str) -> Iterator[None]:
    """``with exit_on_user_error("kd-train"): ...``: a ``USER_ERRORS`` exception prints
    ``<prog>: error: <message>`` and exits with status 2; any other exception propagates."""
    try:
        yield
    except USER_ERRORS as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        sys.exit(2)
