"""Precision choices: refused at start-up when they cannot run, and each teacher precision scores like fp32."""

import pytest
import torch

from conftest import make_tiny_bert
from kd.retrieval.models.cross_encoder import CrossEncoder
from kd.errors import UnsupportedPrecisionError
from kd.precision import check_precision


def test_cpu_refuses_16_mixed_and_names_the_working_choices():
    with pytest.raises(UnsupportedPrecisionError, match="silently run 16-mixed as bf16-mixed.*bf16-mixed"):
        check_precision("cpu", "16-mixed", "fp32")


def test_unknown_teacher_precision_and_missing_gpu_are_refused():
    with pytest.raises(UnsupportedPrecisionError, match="precision.teacher='int3'"):
        check_precision("cpu", "32-true", "int3")
    if not torch.cuda.is_available():
        with pytest.raises(UnsupportedPrecisionError, match="no CUDA device"):
            check_precision("gpu", "32-true", "fp32")


@pytest.mark.parametrize("student", ["32-true", "bf16-mixed", "bf16-true"])
def test_working_cpu_precisions_pass(student):
    check_precision("cpu", student, "fp32")


@pytest.mark.parametrize("precision,tolerance", [("bf16", 0.02), ("fp16", 0.01), ("int8", 0.05), ("nf4", 0.1)])
def test_teacher_precisions_score_close_to_fp32(tiny_model_dir, tmp_path, precision, tolerance):
    base = tiny_model_dir
    if precision == "nf4":
        pytest.importorskip("bitsandbytes")
        base = make_tiny_bert(tmp_path / "wide", hidden=64, layers=1)  # 4-bit blocks are 64 weights wide
    # a trained-looking head: save a cross-encoder with a fixed head so all precisions load the same weights
    reference = CrossEncoder(str(base), max_length=32)
    torch.manual_seed(0)
    torch.nn.init.normal_(reference.model.classifier.weight, std=0.5)
    reference.save(tmp_path / "ce")
    queries = ["apple harvest", "lava flow", "chess gambit", "printer ink"]
    docs = ["apples in autumn", "a volcano erupts", "queen gambit opening", "ink cartridge"]
    fp32 = CrossEncoder.load(str(tmp_path / "ce"), max_length=32).score(queries, docs)
    quantised = CrossEncoder.load(str(tmp_path / "ce"), max_length=32, precision=precision, accelerator="cpu")
    assert quantised.precision == precision
    scores = quantised.score(queries, docs)
    assert torch.allclose(scores, fp32, atol=tolerance), (scores, fp32)
    if precision == "int8":
        assert any("quantized" in type(m).__module__ for m in quantised.model.modules())

