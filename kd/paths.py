"""Where kd finds the shared data folder and keeps its cache."""

from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path | None:
    """The ``shared/`` folder that sits beside a checkout of kd (data such as SciFact), or None.

    ``KD_SHARED_DIR`` wins; otherwise the first ``shared`` folder with a ``data`` subfolder found beside the
    current directory or any of its parents, then beside the package's source tree.
    """
    env = os.environ.get("KD_SHARED_DIR")
    if env:
        return Path(env).expanduser().resolve()
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / "shared"
            if (candidate / "data").is_dir():
                return candidate
    return None


def shared_path(relative: str) -> str:
    """``shared_dir() / relative`` as a string; a clear error when no shared folder exists."""
    root = shared_dir()
    if root is None:
        raise FileNotFoundError(
            f"no shared/ data folder found (looked beside {Path.cwd()} and its parents); set KD_SHARED_DIR "
            f"to the folder that holds {relative}, or point the data config at your own files"
        )
    return str(root / relative)


def cache_dir() -> Path:
    """kd's cache (converted data sets, trained teachers): ``KD_CACHE_DIR`` or ``~/.cache/kd``."""
    return Path(os.environ.get("KD_CACHE_DIR", "~/.cache/kd")).expanduser()
