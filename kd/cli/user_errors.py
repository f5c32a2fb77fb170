"""Turn bad-input and bad-config errors into one line on stderr and exit code 2 (no traceback)."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator


@contextlib.contextmanager
def exit_on_user_error(prog: str) -> Iterator[None]:
    """``with exit_on_user_error("kd-train"): ...``: a ``kd.errors.USER_ERRORS`` exception prints
    ``<prog>: error: <message>`` and exits with status 2; any other exception propagates."""
    from kd.errors import USER_ERRORS

    try:
        yield
    except USER_ERRORS as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        sys.exit(2)
