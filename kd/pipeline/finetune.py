"""LoRA fine-tuning of the student as a LightningModule (QLoRA NF4 on a GPU with enough free memory).

Mode selection (``finetune.quantization=auto``): a CUDA GPU with more than ``min_gpu_free_gb`` free -> the base
model loaded 4-bit NF4 with bitsandbytes (``prepare_model_for_kbit_training`` + LoRA, bf16 compute); otherwise
the CPU path: full-precision (or ``bf16-true`` when asked) LoRA with peft. In cycle >= 2 training continues from
the previous cycle's adapter, on all pairs so far.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

from kd.io import atomic_dir
from kd.pipeline import memory
from kd.pipeline.models import resolve_llm
from kd.pipeline.trainset import collate, encode_example

log = logging.getLogger(__name__)


def choose_mode(fcfg: Mapping) -> dict:
    """{'quantization': 'nf4'|'none', 'precision': ..., 'accelerator': 'gpu'|'cpu', 'gpu_free_gb': float}."""
    import torch

    free = memory.gpu_free_gb()
    cuda = torch.cuda.is_available()
    quant = fcfg.get("quantization", "auto")
    if quant == "auto":
        quant = "nf4" if cuda and free > float(fcfg.get("min_gpu_free_gb", 4.0)) else "none"
    precision = fcfg.get("precision", "auto")
    if precision == "auto":
        precision = "bf16-mixed" if cuda else "32-true"
    return {"quantization": quant, "precision": precision, "accelerator": "gpu" if cuda else "cpu",
            "gpu_free_gb": round(free, 2)}


def _lightning_module_class():
    import lightning as L
    import torch

    class LoRAFineTuner(L.LightningModule):
        """Causal-LM loss on the answer tokens (labels are -100 elsewhere); only LoRA weights train."""

        def __init__(self, model, lr: float, weight_decay: float = 0.0):
            super().__init__()
            self.model = model
            self.lr = lr
            self.weight_decay = weight_decay
            self.losses: list[float] = []

        def training_step(self, batch, batch_idx):
            out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             labels=batch["labels"])
            loss = out.loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"fine-tune step {self.global_step}: non-finite loss {loss.item()} "
                                         "(causal-LM loss on answer tokens)")
            self.losses.append(float(loss.detach()))
            self.log("train_loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
            return loss

        def configure_optimizers(self):
            params = [p for p in self.model.parameters() if p.requires_grad]
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    return LoRAFineTuner


def LoRAFineTuner(*args, **kwargs):  # noqa: N802 - a factory so that importing this module stays light
    return _lightning_module_class()(*args, **kwargs)


def load_trainable_student(model_name: str, fcfg: Mapping, mode: Mapping, previous_adapter: str | None):
    """Base student (4-bit or full precision) wrapped with a trainable LoRA (new, or the previous cycle's)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_llm(model_name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if mode["quantization"] == "nf4":
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                                 bnb_4bit_use_double_quant=True)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, device_map={"": 0})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(fcfg.get("gradient_checkpointing", True)))
    else:
        dtype = torch.bfloat16 if mode["precision"] == "bf16-true" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    if previous_adapter:
        model = PeftModel.from_pretrained(model, previous_adapter, is_trainable=True)
    else:
        lora = LoraConfig(r=int(fcfg["lora_r"]), lora_alpha=int(fcfg["lora_alpha"]),
                          lora_dropout=float(fcfg.get("lora_dropout", 0.0)),
                          target_modules=list(fcfg["target_modules"]), task_type="CAUSAL_LM", bias="none")
        model = get_peft_model(model, lora)
    return model, tokenizer


def finetune(model_name: str, rows: Sequence[dict], fcfg: Mapping, seed: int, adapter_out: Path,
             previous_adapter: str | None = None, progress: bool = True) -> dict:
    """Train LoRA on ``rows`` (question/reference), save the adapter at ``adapter_out`` (atomic rename)."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    mode = choose_mode(fcfg)
    L.seed_everything(seed, workers=True, verbose=False)
    mem = [memory.snapshot("finetune: before load")]
    model, tokenizer = load_trainable_student(model_name, fcfg, mode, previous_adapter)
    mem.append(memory.snapshot("finetune: student loaded"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    examples = [encode_example(tokenizer, r["question"], r["reference"], int(fcfg["max_length"])) for r in rows]
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(examples, batch_size=int(fcfg["batch_size"]), shuffle=True, generator=gen,
                        collate_fn=lambda b: collate(b, tokenizer.pad_token_id), num_workers=0)
    model.train()  # from_pretrained returns eval mode; LoRA dropout must be active while training
    module = LoRAFineTuner(model, lr=float(fcfg["lr"]), weight_decay=float(fcfg.get("weight_decay", 0.0)))
    trainer = L.Trainer(max_epochs=int(fcfg["epochs"]), accelerator=mode["accelerator"], devices=1,
                        precision=mode["precision"] if mode["quantization"] == "none" else "bf16-mixed",
                        logger=False, enable_checkpointing=False, enable_progress_bar=progress,
                        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
                        gradient_clip_val=float(fcfg.get("grad_clip", 1.0)), deterministic=mode["accelerator"] == "cpu")
    trainer.fit(module, loader)
    mem.append(memory.snapshot("finetune: trained"))
    with atomic_dir(adapter_out) as tmp:
        model.save_pretrained(tmp)
    losses = list(module.losses)
    del module, model, trainer
    memory.free_memory()
    mem.append(memory.snapshot("finetune: freed"))
    return {"mode": mode, "losses": [round(x, 6) for x in losses], "steps": len(losses),
            "trainable_params": trainable, "total_params": total, "n_examples": len(examples),
            "answer_tokens": sum(e["n_answer"] for e in examples), "adapter": f"{adapter_out.parent.name}/{adapter_out.name}",
            "previous_adapter": f"{Path(previous_adapter).parent.name}/{Path(previous_adapter).name}" if previous_adapter else None, "memory": mem}
