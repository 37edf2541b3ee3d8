"""Content hashes that give prompts, responses and pairs stable ids.

A pair's id does not depend on which response is called A, so the same pair
imported twice (in either order) is one pair.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

Messages = list[dict[str, str]]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def canonical_messages_json(messages: Messages) -> str:
    return json.dumps(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def prompt_id(messages: Messages) -> str:
    return prompt_id_from_json(canonical_messages_json(messages))


def prompt_id_from_json(messages_json: str) -> str:
    """Same as `prompt_id`, for callers that already hold the canonical JSON."""
    return text_hash("prompt\0" + messages_json)


def response_id(text: str) -> str:
    return text_hash(text)


def pair_id(prompt: str, response_1: str, response_2: str) -> str:
    """Id from a prompt id and two response ids, independent of their order."""
    low, high = sorted((response_1, response_2))
    return text_hash(f"pair\0{prompt}\0{low}\0{high}")


def canonical_order(response_1: str, response_2: str) -> tuple[str, str, bool]:
    """Return (a_id, b_id, flipped): A is the smaller id, so orientation is label-free."""
    if response_1 <= response_2:
        return response_1, response_2, False
    return response_2, response_1, True


def stable_json_hash(value: Any) -> str:
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()


def render_messages(messages: Messages) -> str:
    """Plain-text transcript of a prompt: the bare text for one user turn."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    names = {"user": "Human", "assistant": "Assistant", "system": "System"}
    return "".join(f"\n\n{names.get(m['role'], m['role'])}: {m['content']}" for m in messages)
