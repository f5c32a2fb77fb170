"""One entry point for many chat calls: ``chat_many(model, conversations, max_new_tokens) -> list[str]``.

Local models answer in batches (``LocalChatLM.chat_batch``: several times faster on a CPU; it owns the sorting by
length and the chunking); an API teacher, or any object with only ``chat``, is called once per conversation.
Replies come back in input order. ``desc`` shows a progress bar (with ETA) over the conversations.
"""

from __future__ import annotations

from typing import Sequence


def chat_many(model, conversations: Sequence[list[dict]], max_new_tokens: int, desc: str | None = None) -> list[str]:
    """Replies in input order. A model with ``chat_batch`` (``LocalChatLM``) batches, sorts and pads itself and
    reports each finished batch; anything else is asked once per conversation."""
    conversations = list(conversations)
    if not conversations:
        return []
    bar = None
    if desc:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(conversations), desc=desc, leave=False)
    advance = bar.update if bar is not None else (lambda n: None)
    batch = getattr(model, "chat_batch", None)
    try:
        if callable(batch):
            replies = list(batch(conversations, max_new_tokens, on_batch=advance))
        else:
            replies = []
            for messages in conversations:
                replies.append(model.chat(messages, max_new_tokens))
                advance(1)
    finally:
        if bar is not None:
            bar.close()
    if len(replies) != len(conversations):
        raise RuntimeError(f"{type(model).__name__}.chat_batch returned {len(replies)} replies for "
                           f"{len(conversations)} conversations")
    return replies
