"""The training set: every (question, reference) pair so far, in the student's chat format, loss on the answer only."""

from __future__ import annotations

from typing import Sequence

from kd.pipeline.llm import format_chat
from kd.pipeline.prompts import student_messages

IGNORE_INDEX = -100


def build_trainset(pairs: Sequence[dict]) -> dict:
    """Step 6: all pairs with a non-empty reference (pairs with an empty one are counted, not used)."""
    rows = [{"question": p["question"], "reference": p["reference"], "cycle": p["cycle"]}
            for p in pairs if p.get("reference", "").strip()]
    return {"rows": rows, "n": len(rows), "n_skipped_empty_reference": len(pairs) - len(rows)}


def encode_example(tokenizer, question: str, answer: str, max_length: int) -> dict:
    """input_ids = prompt + answer tokens; labels = -100 on the prompt, answer ids (and end-of-turn) on the rest."""
    msgs = student_messages(question)
    prompt = format_chat(tokenizer, msgs, add_generation_prompt=True)
    full = format_chat(tokenizer, msgs + [{"role": "assistant", "content": answer}], add_generation_prompt=False)
    if full.startswith(prompt):
        answer_text = full[len(prompt):]
    else:  # a template that rewrites earlier turns: fall back to the answer + EOS
        answer_text = answer + (tokenizer.eos_token or "")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer_text, add_special_tokens=False)["input_ids"]
    if not getattr(tokenizer, "chat_template", None) and tokenizer.eos_token_id is not None:
        answer_ids = answer_ids + [tokenizer.eos_token_id]
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[:max_length]
    return {"input_ids": ids, "labels": labels, "n_prompt": len(prompt_ids), "n_answer": len(answer_ids)}


def collate(batch: Sequence[dict], pad_id: int) -> dict:
    import torch

    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, b in enumerate(batch):
        n = len(b["input_ids"])
        ids[i, :n] = torch.tensor(b["input_ids"])
        labels[i, :n] = torch.tensor(b["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
