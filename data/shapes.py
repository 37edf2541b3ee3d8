"""Row shapes prefloop imports, and how each becomes prompts, responses and labels.

Shapes (auto-detected from the first readable row, or forced with `--format`):

* ``trl``: TRL preference rows. Standard: ``prompt``, ``chosen``, ``rejected`` strings
  (a prompt written as an HH transcript is read back as a conversation).
  Conversational: lists of ``{"role", "content"}`` messages; with no ``prompt``, the
  shared prefix of ``chosen`` and ``rejected`` is the prompt.
* ``hh``: raw Anthropic HH-RLHF: ``chosen``/``rejected`` transcripts with
  ``\\n\\nHuman:`` / ``\\n\\nAssistant:`` turns; the shared dialogue is the prompt and
  the final assistant turns are the responses.
* ``pairs``: ``prompt``, ``response_a``, ``response_b``, optional ``label``
  (``a``, ``b``, ``tie``, ``both_bad``) and ``confidence``.
* ``responses``: ``prompt`` and a list ``responses``, optional ``scores`` (one number
  per response). Pair policy: every response is stored; pairs are all
  combinations, or, past ``max_pairs_per_prompt``, that many chosen by a hash of
  the texts (deterministic, spread over all responses). With ``scores`` the
  higher-scored response is labelled the winner (equal scores: tie); a score must be a
  finite number (NaN and infinities are refused, never read as a tie).

Every shape obeys the same caps (`ShapeConfig`): characters per text, characters across
a prompt's turns, turns per message list, responses per row. A prompt needs a user turn
(a system message alone is refused). Two responses are the same response when they
differ only in invisible characters: they are compared after NFC normalisation with
Unicode format characters (category Cf: zero-width spaces and joiners, the byte-order
mark, soft hyphens, direction marks) removed. The texts are stored as given.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from data.errors import RowProblem
from data.ids import Messages, text_hash
from data.schema import VERDICTS

FORMATS = ("auto", "trl", "hh", "pairs", "responses", "unpaired")
ROLES = ("system", "user", "assistant")
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")
_HH_ASSISTANT = "\n\nAssistant:"


@dataclass(frozen=True)
class ShapeConfig:
    """Limits applied to every imported row; each refusal names the field and the cap."""

    max_text_chars: int = 200_000  # one prompt turn, message or response
    max_pairs_per_prompt: int = 10  # pairs formed from one row's list of responses
    max_prompt_chars: int = 400_000  # all of a prompt's turns together
    max_turns: int = 256  # messages in one prompt or message list
    max_responses: int = 256  # responses in one `responses` row


@dataclass
class PairRecord:
    """One comparison; ``verdict`` is relative to (response_1, response_2): "a" = response_1."""

    messages: Messages
    response_1: str
    response_2: str
    verdict: str | None = None
    confidence: float | None = None


@dataclass
class ResponsesRecord:
    messages: Messages
    responses: list[str]
    pairs: list[PairRecord]


@dataclass
class UnpairedRecord:
    """A thumbs up (``desirable``) or down on one response to a prompt (KTO's data)."""

    messages: Messages
    completion: str
    desirable: bool


Record = PairRecord | ResponsesRecord | UnpairedRecord


class RowError(Exception):
    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def detect_format(row: dict[str, Any]) -> str | None:
    keys = set(row)
    if keys & {"chosen", "rejected"}:
        sample = row.get("chosen", row.get("rejected"))
        if isinstance(sample, str) and "prompt" not in keys and "\n\nHuman:" in sample:
            return "hh"
        return "trl"
    if keys & {"response_a", "response_b"}:
        return "pairs"
    if "responses" in keys:
        return "responses"
    if "completion" in keys and "label" in keys:
        return "unpaired"
    return None


def describe_unknown(row: dict[str, Any]) -> str:
    keys = ", ".join(sorted(map(str, row))) or "(none)"
    return (
        f"unknown row shape with fields [{keys}]; expected prompt/chosen/rejected (trl), "
        "chosen/rejected HH transcripts (hh), prompt/response_a/response_b (pairs) "
        "prompt/responses (responses) or prompt/completion/label (unpaired, for KTO)"
    )


def parse_row(row: dict[str, Any], fmt: str, config: ShapeConfig) -> Record:
    """Turn one row into a record or raise RowError naming the field."""
    if fmt == "trl":
        return _parse_trl(row, config)
    if fmt == "hh":
        return _parse_hh(row, config)
    if fmt == "pairs":
        return _parse_pairs(row, config)
    if fmt == "responses":
        return _parse_responses(row, config)
    if fmt == "unpaired":
        return _parse_unpaired(row, config)
    raise RowError(None, f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def located(source: str, line: int, unit: str, error: RowError) -> RowProblem:
    return RowProblem(source, line, error.field, error.message, unit)


# -- field checks --------------------------------------------------------------------


def _text(row: dict[str, Any], field: str, config: ShapeConfig, *, response: bool = False) -> str:
    if field not in row or row[field] is None:
        raise RowError(field, "is missing")
    value = row[field]
    if not isinstance(value, str):
        raise RowError(field, f"must be a string, got {type(value).__name__}")
    return _checked_text(field, value, config, response=response)


def _checked_text(field: str, value: str, config: ShapeConfig, *, response: bool = False) -> str:
    # A response may be empty: models do answer nothing, and HH-RLHF keeps such answers.
    # A prompt or message may not.
    if not response and not value.strip():
        raise RowError(field, "is empty")
    if len(value) > config.max_text_chars:
        raise RowError(
            field,
            f"is {len(value)} characters, over the {config.max_text_chars} limit "
            "(raise max_text_chars to allow it)",
        )
    if "\x00" in value:
        raise RowError(field, "contains a NUL character")
    return value


def _messages(value: Any, field: str, config: ShapeConfig, *, max_chars: int = 0) -> Messages:
    """Checked messages; `max_chars` caps their total (default: a prompt's cap)."""
    if not isinstance(value, list) or not value:
        raise RowError(field, "must be a non-empty list of {role, content} messages")
    _check_turns(len(value), field, config)
    max_chars = max_chars or config.max_prompt_chars
    total = 0
    messages: Messages = []
    for index, message in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(message, dict):
            raise RowError(
                where, f"must be an object with role and content, got {type(message).__name__}"
            )
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RowError(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise RowError(f"{where}.content", f"must be a string, got {type(content).__name__}")
        total += len(content)
        if total > max_chars:
            raise RowError(field, _too_many_chars(f"{total}+", max_chars))
        # assistant turns may be empty, like any response (HH dialogues have some)
        messages.append(
            {
                "role": role,
                "content": _checked_text(
                    f"{where}.content", content, config, response=role == "assistant"
                ),
            }
        )
    return messages


def _check_turns(count: int, field: str, config: ShapeConfig) -> None:
    if count > config.max_turns:
        raise RowError(
            field,
            f"has {count} messages, over the {config.max_turns}-turn limit "
            "(raise max_turns to allow it)",
        )


def _too_many_chars(count: str, limit: int) -> str:
    return (
        f"holds {count} characters across its turns, over the {limit} limit "
        "(raise max_prompt_chars to allow it)"
    )


def _checked_prompt(messages: Messages, field: str, config: ShapeConfig) -> Messages:
    """A prompt within the caps that asks something: at least one user turn."""
    _check_turns(len(messages), field, config)
    total = sum(len(m["content"]) for m in messages)
    if total > config.max_prompt_chars:
        raise RowError(field, _too_many_chars(str(total), config.max_prompt_chars))
    if not any(m["role"] == "user" for m in messages):
        roles = ", ".join(dict.fromkeys(m["role"] for m in messages))
        raise RowError(
            field, f"has no user message (only {roles}); a prompt needs at least one user turn"
        )
    return messages


def _prompt(row: dict[str, Any], config: ShapeConfig) -> Messages:
    value = row.get("prompt")
    if isinstance(value, list):
        return _checked_prompt(_messages(value, "prompt", config), "prompt", config)
    text = _text(row, "prompt", config)
    if text.startswith("\n\nHuman:"):
        turns = _hh_turns(
            text.removesuffix("\n\nAssistant:").removesuffix("\n\nAssistant: "), "prompt"
        )
        return _checked_prompt(turns, "prompt", config)
    return [{"role": "user", "content": text}]


def identity(text: str) -> str:
    """What two responses are compared by: NFC, without format (Cf) characters."""
    text = unicodedata.normalize("NFC", text)
    if text.isascii():
        return text
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def _distinct(r1: str, r2: str, fields: tuple[str, str]) -> None:
    if r1 == r2:
        raise RowError(
            fields[1], f"is identical to {fields[0]}: a pair needs two different responses"
        )
    if identity(r1) == identity(r2):
        raise RowError(
            fields[1],
            f"is identical to {fields[0]} but for invisible characters (zero-width, byte-order "
            "mark, soft hyphen or Unicode normalisation): a pair needs two different responses",
        )


def _verdict(row: dict[str, Any]) -> tuple[str | None, float | None]:
    label = row.get("label")
    if label is None or label == "":
        return None, None
    if not isinstance(label, str) or label.strip().lower() not in VERDICTS:
        raise RowError("label", f"must be one of {', '.join(VERDICTS)}, got {label!r}")
    confidence = row.get("confidence")
    if confidence is None or confidence == "":
        return label.strip().lower(), None
    try:
        if isinstance(confidence, bool):
            raise TypeError
        value = float(confidence)
    except (TypeError, ValueError):
        raise RowError(
            "confidence", f"must be a number between 0 and 1, got {confidence!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise RowError("confidence", f"must be between 0 and 1, got {value}")
    return label.strip().lower(), value


# -- shapes --------------------------------------------------------------------------


def _parse_trl(row: dict[str, Any], config: ShapeConfig) -> PairRecord:
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if isinstance(chosen, list) or isinstance(rejected, list):
        # a conversation holds the prompt and the response
        room = config.max_prompt_chars + config.max_text_chars
        c_msgs = _messages(chosen, "chosen", config, max_chars=room)
        r_msgs = _messages(rejected, "rejected", config, max_chars=room)
        if "prompt" in row and row["prompt"] is not None:
            prompt = _prompt(row, config)
        else:
            prompt, c_msgs, r_msgs = _split_shared_prefix(c_msgs, r_msgs)
            prompt = _checked_prompt(prompt, "prompt", config)
        c_text = _final_assistant(c_msgs, "chosen")
        r_text = _final_assistant(r_msgs, "rejected")
    else:
        prompt = _prompt(row, config)
        c_text = _text(row, "chosen", config, response=True)
        r_text = _text(row, "rejected", config, response=True)
    _distinct(c_text, r_text, ("chosen", "rejected"))
    return PairRecord(prompt, c_text, r_text, "a")


def _split_shared_prefix(
    chosen: Messages, rejected: Messages
) -> tuple[Messages, Messages, Messages]:
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise RowError(
            "prompt", "is missing and chosen/rejected share no leading messages to use as one"
        )
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _final_assistant(messages: Messages, field: str) -> str:
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise RowError(field, "must hold exactly one assistant message after the prompt")
    return messages[0]["content"]


def _hh_turns(text: str, field: str) -> Messages:
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        raise RowError(field, "must start with '\\n\\nHuman:' (HH-RLHF transcript)")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [
        {"role": roles[speaker], "content": content}
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def _parse_hh(row: dict[str, Any], config: ShapeConfig) -> PairRecord:
    chosen = _text(row, "chosen", config)
    rejected = _text(row, "rejected", config)
    # The prompt ends at the last "\n\nAssistant:" the two transcripts share. Splitting each
    # transcript into turns instead would break on responses that invent a "Human:" turn.
    shared = len(os.path.commonprefix([chosen, rejected]))
    marker = chosen.rfind(_HH_ASSISTANT, 0, shared)
    if marker < 0:
        raise RowError("rejected", "shares no dialogue ending in '\\n\\nAssistant:' with chosen")
    prompt = _hh_turns(chosen[:marker], "chosen")
    if not prompt or prompt[-1]["role"] != "user":
        raise RowError("chosen", "must have a Human turn before the final Assistant turn")
    _checked_prompt(prompt, "chosen", config)
    start = marker + len(_HH_ASSISTANT)
    # HH keeps a few empty final turns: an empty answer is a real (bad) response, so it stays.
    c_text, r_text = (t[start:].removeprefix(" ") for t in (chosen, rejected))
    _distinct(c_text, r_text, ("chosen", "rejected"))
    return PairRecord(prompt, c_text, r_text, "a")


def _parse_pairs(row: dict[str, Any], config: ShapeConfig) -> PairRecord:
    prompt = _prompt(row, config)
    a = _text(row, "response_a", config, response=True)
    b = _text(row, "response_b", config, response=True)
    _distinct(a, b, ("response_a", "response_b"))
    verdict, confidence = _verdict(row)
    return PairRecord(prompt, a, b, verdict, confidence)


def _parse_responses(row: dict[str, Any], config: ShapeConfig) -> ResponsesRecord:
    prompt = _prompt(row, config)
    value = row.get("responses")
    if not isinstance(value, list):
        raise RowError("responses", "must be a list of response strings")
    if len(value) > config.max_responses:
        raise RowError(
            "responses",
            f"has {len(value)} responses, over the {config.max_responses} limit "
            "(raise max_responses to allow it)",
        )
    responses: list[str] = []
    for index, text in enumerate(value):
        if not isinstance(text, str):
            raise RowError(f"responses[{index}]", f"must be a string, got {type(text).__name__}")
        responses.append(_checked_text(f"responses[{index}]", text, config, response=True))
    # responses that differ only in invisible characters count once: the first is kept
    kept: dict[str, str] = {}
    for text in responses:
        kept.setdefault(identity(text), text)
    unique = list(kept.values())
    if len(unique) < 2:
        raise RowError(
            "responses",
            "needs at least two different responses to form a pair (texts that differ only "
            "in invisible characters count as one)",
        )
    scores = _scores(row, len(responses))
    score_of = dict(zip(responses, scores, strict=True)) if scores else {}  # the last score wins
    combos = list(itertools.combinations(unique, 2))
    if len(combos) > config.max_pairs_per_prompt:
        combos = sorted(combos, key=lambda c: text_hash(c[0] + "\0" + c[1]))[
            : config.max_pairs_per_prompt
        ]
    pairs = []
    for first, second in combos:
        verdict = None
        if score_of:
            s1, s2 = score_of[first], score_of[second]
            verdict = "a" if s1 > s2 else "b" if s2 > s1 else "tie"
        pairs.append(PairRecord(prompt, first, second, verdict))
    return ResponsesRecord(prompt, unique, pairs)


_DESIRABLE_WORDS = {"true": True, "false": False, "1": True, "0": False, "up": True, "down": False}


def _parse_unpaired(row: dict[str, Any], config: ShapeConfig) -> UnpairedRecord:
    prompt = _prompt(row, config)
    completion = _text(row, "completion", config, response=True)
    label = row.get("label")
    if isinstance(label, str):
        desirable = _DESIRABLE_WORDS.get(label.strip().lower())
    elif isinstance(label, bool | int) and label in (0, 1):  # True == 1, False == 0
        desirable = bool(label)
    else:
        desirable = None
    if desirable is None:
        raise RowError(
            "label",
            f"must say whether the completion is desirable: true/false, 1/0 or up/down, "
            f"got {label!r}",
        )
    return UnpairedRecord(prompt, completion, desirable)


def _scores(row: dict[str, Any], count: int) -> list[float] | None:
    value = row.get("scores")
    if value is None or value == "":
        return None
    if not isinstance(value, list) or len(value) != count:
        raise RowError("scores", f"must be a list of {count} numbers, one per response")
    scores = []
    for index, item in enumerate(value):
        try:
            if isinstance(item, bool):
                raise TypeError
            number = float(item)
        except (TypeError, ValueError):
            raise RowError(f"scores[{index}]", f"must be a number, got {item!r}") from None
        if not math.isfinite(number):
            raise RowError(
                f"scores[{index}]",
                f"is {number}; scores must be finite numbers (NaN or infinity would decide "
                "the pair's label arbitrarily)",
            )
        scores.append(number)
    return scores
