"""Reading a verdict out of a judge's reply, and P(A) out of its logprobs.

`parse_verdict` accepts the forms judges actually write, tried from the most to the
least explicit:

* JSON such as `{"winner": "A"}` (keys winner/verdict/preferred/better/choice),
* MT-Bench `[[A]]` / `[[B]]` / `[[C]]` (C = tie),
* `Verdict: A`, `Final verdict: tie`, `Winner: B`, `Answer: A`,
* AlpacaEval `Output (a)` / `Output (b)`,
* `Response A is better` (also Assistant/Output/Answer A, "is preferred"),
* a bare `A`, `B` or `tie`.

Anything else, or a reply naming both A and B in the same form, is `None`: the caller
records a failed judgement and never a label. Verdicts here are about the order *shown*
(`"a"` = the response shown first); the batch maps them back to the stored A/B.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

_TIE_WORDS = {"tie", "c", "equal", "draw", "same", "both", "neither"}


@dataclass(frozen=True)
class Verdict:
    """A parsed verdict about the shown order; `start` indexes its decisive character in the text."""

    shown: str  # "a", "b" or "tie"
    start: int
    form: str  # which rule matched: json, mtbench, labelled, alpacaeval, sentence, bare


def _letter(value: str) -> str | None:
    word = value.strip().strip("\"'*()[].:").strip().lower()
    word = re.sub(r"^(response|assistant|output|answer|model)\s*", "", word).strip("() ")
    if word in ("a", "1"):
        return "a"
    if word in ("b", "2"):
        return "b"
    if word in _TIE_WORDS:
        return "tie"
    return None


def _unique(found: list[tuple[str, int]], form: str) -> Verdict | None | bool:
    """One distinct verdict -> it (last position); several -> False (ambiguous); none -> None."""
    if not found:
        return None
    if len({v for v, _ in found}) > 1:
        return False
    verdict, start = found[-1]
    return Verdict(verdict, start, form)


def _json_verdict(text: str) -> Verdict | None | bool:
    first, last = text.find("{"), text.rfind("}")
    if first < 0 or last <= first:
        return None
    try:
        obj = json.loads(text[first : last + 1])
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    for key in ("winner", "verdict", "preferred", "preference", "better", "choice"):
        value = obj.get(key)
        if isinstance(value, str) and (verdict := _letter(value)) is not None:
            raw = json.dumps(value)[1:-1]
            anchor = text.find(raw, first)
            offset = anchor + _decisive_offset(raw) if anchor >= 0 else first
            return Verdict(verdict, offset, "json")
    return None


def _decisive_offset(value: str) -> int:
    """Index of the A/B letter inside a value like "Response A" or "Output (b)"."""
    match = re.search(r"\b([ABab])\b", value)
    return match.start(1) if match else 0


_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("mtbench", re.compile(r"\[\[\s*([ABCabc]|tie)\s*\]\]")),
    (
        "labelled",
        re.compile(
            r"(?i:(?:final\s+)?(?:verdict|winner|answer|decision|preference|better response))\s*"
            r"(?:(?:[:=]|(?i:is)?\s*[:=])\s*\**\s*(?i:response\s+|output\s+|assistant\s+)?\(?([ABab]|(?i:tie))"
            r"|(?i:\s+is)?\s+\**(?i:response\s+|output\s+|assistant\s+)?\(?([AB]|(?i:tie)))\b"
        ),
    ),
    ("alpacaeval", re.compile(r"\bOutput\s*\(([ab])\)", re.IGNORECASE)),
    (
        "sentence",
        re.compile(
            r"\b(?:response|assistant|output|answer)?\s*\(?([AB])\)?\s+(?:is|was)\s+"
            r"(?:clearly\s+|slightly\s+|much\s+)?(?:better|superior|preferred|preferable|the better)",
            re.IGNORECASE,
        ),
    ),
]

_BARE = re.compile(r"^[\s\"'*\[(]*(A|B|a|b|tie|Tie|TIE)[\s\"'*\]).!]*$")


def parse_verdict(text: str | None) -> Verdict | None:
    """The verdict in `text` about the shown order, or None when there is none (or it is ambiguous)."""
    if not text or not text.strip():
        return None
    found = _json_verdict(text)
    if isinstance(found, Verdict):
        return found
    for form, pattern in _RULES:
        hits = [
            (v, m.start(g))
            for m in pattern.finditer(text)
            for g in range(1, (pattern.groups or 0) + 1)
            if m.group(g) and (v := _letter(m.group(g)))
        ]
        result = _unique(hits, form)
        if result is False:
            return None
        if isinstance(result, Verdict):
            return result
    bare = _BARE.match(text)
    if bare:
        verdict = _letter(bare.group(1))
        if verdict:
            return Verdict(verdict, bare.start(1), "bare")
    return None


def _norm_token(token: str) -> str | None:
    word = token.strip().strip("[]()\"'*:.").strip().upper()
    return word if word in ("A", "B") else None


def p_a_from_logprobs(content: list[dict[str, Any]] | None, verdict: Verdict) -> float | None:
    """P(shown A) from the top logprobs of the token that carries the verdict, or None.

    `content` is the chat API's `choices[0].logprobs.content` as plain dicts. The token
    whose character span covers `verdict.start` is the verdict token; its alternatives
    spelled A or B (any spacing, brackets or case) are pooled and normalised over A/B.
    When only one letter appears in the top-k, the other is bounded by the smallest
    listed probability, which keeps the confidence honest rather than 1.0.
    """
    if not content or verdict.shown == "tie":
        return None
    position = 0
    token_info: dict[str, Any] | None = None
    for item in content:
        token = item.get("token") or ""
        if position <= verdict.start < position + len(token):
            token_info = item
            break
        position += len(token)
    if token_info is None or _norm_token(token_info.get("token") or "") is None:
        return None
    alternatives = token_info.get("top_logprobs") or []
    if not alternatives:
        alternatives = [{"token": token_info.get("token"), "logprob": token_info.get("logprob")}]
    mass = {"A": 0.0, "B": 0.0}
    floor = math.inf
    for alt in alternatives:
        logprob = alt.get("logprob")
        if logprob is None:
            continue
        floor = min(floor, float(logprob))
        letter = _norm_token(alt.get("token") or "")
        if letter:
            mass[letter] += math.exp(float(logprob))
    if mass["A"] == 0.0 and mass["B"] == 0.0:
        return None
    bound = math.exp(floor) if math.isfinite(floor) else 0.0
    p_a_mass = mass["A"] or bound
    p_b_mass = mass["B"] or bound
    return p_a_mass / (p_a_mass + p_b_mass)
