"""One error type for bad input files: it names the file, the line and what is wrong."""

from __future__ import annotations

import os


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
