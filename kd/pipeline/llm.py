"""A local Hugging Face causal LM used as a chat model (teacher, judge or student), with greedy decoding."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

from kd.pipeline import memory
from kd.pipeline.models import resolve_llm

log = logging.getLogger(__name__)


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    return getattr(torch, dtype)


def format_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The model's chat template, or a plain "User:/Assistant:" transcript when it has none."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
    return text + ("Assistant:" if add_generation_prompt else "")


class LocalChatLM:
    """``chat(messages) -> str`` on a local causal LM (optionally with a LoRA adapter)."""

    def __init__(self, name_or_path: str, dtype: str = "auto", device: str = "auto", adapter: str | None = None,
                 load_in_4bit: bool = False, batch_size: int = 8):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = name_or_path
        self.batch_size = batch_size
        self.device = pick_device(device)
        path = resolve_llm(name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        kwargs: dict = {"dtype": pick_dtype(dtype, self.device)}
        if load_in_4bit:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                               bnb_4bit_compute_dtype=torch.bfloat16)
            kwargs["device_map"] = {"": 0}
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        if not load_in_4bit:
            model = model.to(self.device)
        self.model = model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        log.info("loaded %s%s on %s (%s)", name_or_path, f" + adapter {adapter}" if adapter else "", self.device,
                 kwargs["dtype"])

    def chat(self, messages: list[dict], max_new_tokens: int = 128) -> str:
        import torch

        text = format_chat(self.tokenizer, messages)
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.device)
        with torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    def chat_batch(self, conversations: Sequence[list[dict]], max_new_tokens: int = 128,
                   batch_size: int | None = None, on_batch: Callable[[int], None] | None = None) -> list[str]:
        """Replies to several conversations, greedy, ``batch_size`` at a time (left-padded), in input order.

        On a CPU one sequence at a time is memory-bound: a batch of 8 costs little more per step than one, so
        the teacher's questions/references and the judge's calls run several times faster this way. Prompts are
        sorted by length before batching (less padding); the batches depend only on the inputs, so a resumed run
        sees the same batches and the same replies. ``on_batch(n)`` is called after each batch of n replies."""
        import torch

        conversations = list(conversations)
        if not conversations:
            return []
        size = max(1, int(batch_size or self.batch_size))
        texts = [format_chat(self.tokenizer, m) for m in conversations]
        lengths = [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
        replies: list[str] = [""] * len(texts)
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            for start in range(0, len(order), size):
                idx = order[start:start + size]
                enc = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True,
                                     add_special_tokens=False).to(self.device)
                with torch.no_grad():
                    out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                              pad_token_id=self.tokenizer.pad_token_id)
                for row, i in enumerate(idx):
                    replies[i] = self.tokenizer.decode(out[row, enc["input_ids"].shape[1]:],
                                                       skip_special_tokens=True).strip()
                if on_batch is not None:
                    on_batch(len(idx))
        finally:
            self.tokenizer.padding_side = side
        return replies

    def close(self) -> None:
        self.model = None
        memory.free_memory()
