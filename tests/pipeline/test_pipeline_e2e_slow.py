"""End to end on the real packaged models (Qwen2.5-Coder-0.5B teacher and judge, SmolLM2-135M student, MiniLM
embeddings, embedded Kubernetes v1.28 reference), 1 cycle x 2 questions and a held-out set of 2 questions per
topic scored at cycles 0 and 1: a few minutes on 2 CPU cores."""

from __future__ import annotations

import math

import pytest

from pipeline_helpers import REPO


@pytest.mark.slow
def test_real_models_one_cycle(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from kd.pipeline.orchestrate import run_pipeline

    try:
        from kd.pipeline.models import packaged_llm_dir

        packaged_llm_dir("qwen2.5-coder-0.5b")
        packaged_llm_dir("smollm2")
    except Exception as exc:  # noqa: BLE001 - a missing package is a skip, with the install command
        pytest.skip(str(exc))
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="pipeline", overrides=[
            f"run_dir={tmp_path / 'run'}", "cycles=1", "questions_per_cycle=2", "topics=[pods,storage]",
            "kb.source=kubernetes-validate", "progress=false", "threads=1", "eval.heldout_per_topic=2"])
    result = run_pipeline(OmegaConf.to_container(cfg, resolve=True))
    from kd.pipeline.rundir import step_keys

    assert result["executed"] == step_keys(1, heldout=True)
    curve = result["report"]["learning_curve"]
    assert [r["cycle"] for r in curve] == [0, 1]
    for r in curve:
        for metric in ("relevancy", "correctness"):
            block = r[metric]
            assert block["n"] == 4 and 0.0 <= block["mean"] <= 1.0 and math.isfinite(block["mean"])
            assert block["ci95"][0] <= block["mean"] <= block["ci95"][1]
    assert curve[1]["correctness_gain_ci95"][0] <= curve[1]["correctness_gain"] <= curve[1]["correctness_gain_ci95"][1]
    held = {s["question"] for s in result["report"]["heldout"]["samples"]}
    assert held and not held & {s["question"] for s in result["report"]["cycles"][0]["samples"]}
    (cycle,) = result["report"]["cycles"]
    assert cycle["train_examples"] == 2 and cycle["finetune_mode"]["quantization"] == "none"
    assert all(math.isfinite(x) for x in cycle["train_losses"]) and len(cycle["train_losses"]) == 2  # 2 epochs x 1 step
    for side in ("baseline", "finetuned"):
        s = cycle[side]
        assert s["n"] == 2 and s["n_scored"] + s["n_unparseable"] == 2
        assert 0.0 <= s["mean_unparseable_as_zero"] <= 1.0
    for sample in cycle["samples"]:
        assert sample["question"].endswith("?") and sample["reference"] and sample["baseline_answer"]
    again = run_pipeline(OmegaConf.to_container(cfg, resolve=True))
    assert again["executed"] == [] and again["report"]["cycles"] == result["report"]["cycles"]
