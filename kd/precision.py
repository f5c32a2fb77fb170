"""Precision settings: what the student trains in (Lightning) and what the frozen teacher is loaded in.

| ``precision.teacher`` | loaded as                                                  | CPU | CUDA |
|-----------------------|------------------------------------------------------------|-----|------|
| ``fp32``              | float32 weights                                            | yes | yes  |
| ``bf16``              | bfloat16 weights                                           | yes | yes  |
| ``fp16``              | float16 weights                                            | yes | yes  |
| ``int8``              | CPU: ``torch.ao`` dynamic int8 quantisation of every Linear;| yes | yes  |
|                       | CUDA: bitsandbytes LLM.int8 (``load_in_8bit``)              |     |      |
| ``nf4``               | bitsandbytes 4-bit NF4 (``BitsAndBytesConfig``, bf16 compute)| yes | yes  |

Student precisions are Lightning's: ``32-true``, ``bf16-mixed``, ``bf16-true``, ``16-mixed`` (CUDA only:
on CPU Lightning silently swaps it for bf16-mixed, so kd refuses it there), ``16-true``, ``64-true``.
The teacher is frozen and only runs forward passes, so bitsandbytes' CPU training trap (4-bit weights repacked
into an inference-only layout after an eval forward, silently zeroing LoRA gradients) cannot bite it.
Unsupported combinations are refused at start-up, before any model is loaded.
"""

from __future__ import annotations

from typing import Any

import torch

from kd.errors import UnsupportedPrecisionError

TEACHER_PRECISIONS = ("fp32", "bf16", "fp16", "int8", "nf4")
STUDENT_PRECISIONS_CPU = ("32-true", "bf16-mixed", "bf16-true", "16-true", "64-true")
STUDENT_PRECISIONS_CUDA = ("32-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true")


def resolve_accelerator(accelerator: str) -> str:
    """``auto`` -> ``gpu`` when CUDA is available, else ``cpu``; other values pass through."""
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return "gpu" if accelerator == "cuda" else accelerator


def check_precision(accelerator: str, student: str, teacher: str) -> None:
    """Refuse combinations that do not run (or would silently run as something else) on ``accelerator``."""
    device = resolve_accelerator(accelerator)
    if teacher not in TEACHER_PRECISIONS:
        raise UnsupportedPrecisionError(
            f"precision.teacher={teacher!r} is unknown; choose one of {', '.join(TEACHER_PRECISIONS)}")
    allowed = STUDENT_PRECISIONS_CPU if device == "cpu" else STUDENT_PRECISIONS_CUDA
    if str(student) not in allowed:
        hint = " (on CPU Lightning would silently run 16-mixed as bf16-mixed)" if str(student) == "16-mixed" else ""
        raise UnsupportedPrecisionError(
            f"precision.student={student!r} does not run on {device}{hint}; working choices: {', '.join(allowed)}")
    if device == "gpu" and not torch.cuda.is_available():
        raise UnsupportedPrecisionError("trainer=gpu but no CUDA device is visible; use trainer=cpu or trainer=auto")
    if teacher == "nf4":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise UnsupportedPrecisionError(
                "precision.teacher=nf4 needs bitsandbytes (pip install 'kd[quant]'); working without it: "
                "fp32, bf16, fp16, int8") from exc


def teacher_load_kwargs(teacher: str, accelerator: str) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for loading the teacher in ``teacher`` precision."""
    device = resolve_accelerator(accelerator)
    if teacher == "fp32":
        return {}
    if teacher == "bf16":
        return {"dtype": torch.bfloat16}
    if teacher == "fp16":
        return {"dtype": torch.float16}
    if teacher == "int8":
        if device == "cpu":
            return {}  # quantised after loading: see quantize_teacher
        from transformers import BitsAndBytesConfig

        config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["classifier", "score"])
        return {"quantization_config": config, "device_map": {"": 0}}
    if teacher == "nf4":
        from transformers import BitsAndBytesConfig

        # The one-logit head stays in full precision (it is tiny, and bitsandbytes' CPU kernels need output
        # widths divisible by their block size).
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                                    llm_int8_skip_modules=["classifier", "score"])
        return {"quantization_config": config, "device_map": {"": 0} if device == "gpu" else "cpu"}
    raise UnsupportedPrecisionError(f"precision.teacher={teacher!r} is unknown; choose one of {TEACHER_PRECISIONS}")


def quantize_teacher(model: torch.nn.Module, teacher: str, accelerator: str) -> torch.nn.Module:
    """Post-load step: CPU int8 applies ``torch.ao`` dynamic quantisation to the Linear layers (inference only)."""
    if teacher == "int8" and resolve_accelerator(accelerator) == "cpu":
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model
