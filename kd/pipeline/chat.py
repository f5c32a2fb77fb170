"""One entry point for many chat calls: ``chat_many(model, conversations, max_new_tokens) -> list[str]``.

Local models answer in batches (``LocalChatLM.chat_batch``: several times faster on a CPU); an API teacher, or any
object with only ``chat``, is called once per conversation. Replies come back in input order. ``desc`` shows a
progress bar (with ETA) over the conversations.
"""

from __future__ import annotations

from typing import Sequence


def chat_many(model, conversations: Sequence[list[dict]], max_new_tokens: int, desc: str | None = None) -> list[str]:
    conversations = list(conversations)
    if not conversations:
        return []
    batch = getattr(model, "chat_batch", None)
    size = int(getattr(model, "batch_size", 1) or 1) if callable(batch) else 1
    bar = None
    if desc:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(conversations), desc=desc, leave=False)
    # similar lengths share a batch (less padding); the order depends only on the inputs
    order = sorted(range(len(conversations)), key=lambda i: (sum(len(m["content"]) for m in conversations[i]), i))
    replies: list[str] = [""] * len(conversations)
    try:
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            chunk = [conversations[i] for i in idx]
            outs = batch(chunk, max_new_tokens) if callable(batch) else [model.chat(c, max_new_tokens) for c in chunk]
            for i, out in zip(idx, outs):
                replies[i] = out
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return replies
