"""Training set formatting (loss on answer tokens only), LoRA fine-tuning as a LightningModule, config validation."""

from __future__ import annotations

import pytest
from pipeline_helpers import (kb_dir, make_config, openai_server, smollm_tokenizer_dir,  # noqa: F401
                              tiny_student)

from kd.errors import ConfigError
from kd.pipeline.config import validate
from kd.pipeline.trainset import IGNORE_INDEX, build_trainset, collate, encode_example

FCFG = {"quantization": "auto", "precision": "auto", "min_gpu_free_gb": 4.0, "lora_r": 4, "lora_alpha": 8,
        "lora_dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "epochs": 6, "batch_size": 2, "lr": 5e-2,
        "max_length": 128, "grad_clip": 1.0}
ROWS = [{"question": "What is a Pod?", "reference": "A Pod is a group of one or more containers."},
        {"question": "What is a Service?", "reference": "A Service exposes an application running in Pods."},
        {"question": "What is a PersistentVolume?", "reference": "Storage provisioned in the cluster."}]


@pytest.fixture(scope="module")
def tokenizer(tiny_student):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_student)


def test_loss_only_on_answer_tokens(tokenizer):
    ex = encode_example(tokenizer, "What is a Pod?", "A Pod is a group of containers.", 256)
    labels, ids = ex["labels"], ex["input_ids"]
    assert len(labels) == len(ids) == ex["n_prompt"] + ex["n_answer"]
    assert all(x == IGNORE_INDEX for x in labels[: ex["n_prompt"]])
    assert labels[ex["n_prompt"]:] == ids[ex["n_prompt"]:]
    answer = tokenizer.decode(ids[ex["n_prompt"]:])
    assert answer.startswith("A Pod is a group of containers.") and "<|im_end|>" in answer
    assert "What is a Pod?" in tokenizer.decode(ids[: ex["n_prompt"]])
    batch = collate([ex, encode_example(tokenizer, "Q?", "A.", 256)], tokenizer.pad_token_id or 0)
    assert batch["input_ids"].shape == batch["labels"].shape
    assert int(batch["attention_mask"][1].sum()) < batch["input_ids"].shape[1]


def test_trainset_keeps_all_pairs_and_counts_empty_references():
    pairs = [{"question": "a?", "reference": "x", "cycle": 1}, {"question": "b?", "reference": " ", "cycle": 1},
             {"question": "c?", "reference": "y", "cycle": 2}]
    ts = build_trainset(pairs)
    assert ts["n"] == 2 and ts["n_skipped_empty_reference"] == 1 and [r["cycle"] for r in ts["rows"]] == [1, 2]


def test_lora_gradients_are_nonzero_after_a_training_step(tiny_student, tokenizer):
    import torch

    from kd.pipeline.finetune import LoRAFineTuner, choose_mode, load_trainable_student

    mode = choose_mode(FCFG)
    assert mode["quantization"] == "none" and mode["precision"] == "32-true"  # CPU path on this machine
    torch.manual_seed(0)
    model, tok = load_trainable_student(tiny_student, FCFG, mode, None)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    module = LoRAFineTuner(model, lr=1e-3)
    batch = collate([encode_example(tok, r["question"], r["reference"], 128) for r in ROWS[:2]], tok.pad_token_id)
    loss = module.training_step(batch, 0)
    loss.backward()
    grads = {n: p.grad for n, p in trainable.items()}
    lora_b = [g for n, g in grads.items() if "lora_B" in n]
    assert all(g is not None for g in grads.values())
    assert all(float(g.abs().sum()) > 0 for g in lora_b)  # B gets gradient at step 1 (A is random, B zero)
    frozen = [p for n, p in model.named_parameters() if not p.requires_grad]
    assert all(p.grad is None for p in frozen)


def test_finetune_lowers_loss_and_saves_adapter(tiny_student, tmp_path):
    from kd.pipeline.finetune import finetune

    out = finetune(tiny_student, ROWS, FCFG, seed=1, adapter_out=tmp_path / "cycle_01" / "adapter", progress=False)
    losses = out["losses"]
    assert out["steps"] == 12 and len(losses) == 12
    assert losses[-1] < losses[0] - 0.5, losses
    assert (tmp_path / "cycle_01" / "adapter" / "adapter_config.json").is_file()
    assert out["trainable_params"] < out["total_params"] / 5
    stages = [m["stage"] for m in out["memory"]]
    assert stages[0].startswith("finetune: before") and stages[-1] == "finetune: freed"
    # cycle 2 continues from cycle 1's adapter
    out2 = finetune(tiny_student, ROWS, FCFG | {"epochs": 1}, seed=2, adapter_out=tmp_path / "cycle_02" / "adapter",
                    previous_adapter=str(tmp_path / "cycle_01" / "adapter"), progress=False)
    assert out2["previous_adapter"] == "cycle_01/adapter" and out2["losses"][0] < losses[0] - 0.5


def test_config_validation_names_the_key(make_config, tmp_path):
    cfg = make_config(tmp_path / "r")
    validate(cfg, cuda_available=False)
    for key, value, pattern in [("cycles", 0, "cycles"), ("relevancy", {"k": 3, "threshold": 1.5}, "relevancy.threshold"),
                                ("topics", [], "topics")]:
        with pytest.raises(ConfigError, match=pattern):
            validate({**cfg, key: value}, cuda_available=False)
    with pytest.raises(ConfigError, match="finetune.quantization=nf4 needs a CUDA GPU"):
        validate({**cfg, "finetune": {**cfg["finetune"], "quantization": "nf4"}}, cuda_available=False)
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): finetune.lora_rank"):
        validate({**cfg, "finetune": {**cfg["finetune"], "lora_rank": 8}}, cuda_available=False)
    with pytest.raises(ConfigError, match=r"unknown config key\(s\): cycels"):
        validate({**cfg, "cycels": 3}, cuda_available=False)
    with pytest.raises(ConfigError, match="teacher.api_key must not be put in the config"):
        validate({**cfg, "teacher": {**cfg["teacher"], "api_key": "sk-x"}}, cuda_available=False)


def test_nan_loss_stops_training_naming_the_step():
    import torch

    from kd.pipeline.finetune import LoRAFineTuner

    class NaNModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, **kw):
            return type("Out", (), {"loss": self.w * float("nan")})()

    module = LoRAFineTuner(NaNModel(), lr=1e-3)
    batch = {"input_ids": torch.ones(1, 3, dtype=torch.long), "attention_mask": torch.ones(1, 3), "labels": None}
    with pytest.raises(FloatingPointError, match=r"fine-tune step 0: non-finite loss nan"):
        module.training_step(batch, 0)
