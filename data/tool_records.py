"""What the annotation-tool formats (Label Studio, Argilla) read and write, shared by both.

A tool's row becomes a `ToolPair`: the pair (prompt and two responses, no verdict) and one
`Vote` per annotator who answered it. Votes are human labels: the importer stores each
annotator's votes with source ``human`` and the annotator as ``who`` (`data.ingest`), so the
pairs leave the human queue as if they had been labelled in prefloop's own app.

A tool's pre-annotations (Label Studio ``predictions``, Argilla ``suggestions``) are read
past on import: they are some model's guesses, and prefloop has its own judge and ensemble.
Stored as labels they would outrank the judge (import > judge in the export), and stored as
reference labels they would corrupt the yardstick the ensemble is measured against. On
export prefloop writes its own verdicts as those pre-annotations (`Suggestion`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from data.ids import canonical_order, pair_id, prompt_id, response_id
from data.schema import VERDICTS
from data.shapes import PairRecord, Record, RowError, ShapeConfig, parse_row

TOOL_FORMATS = ("labelstudio", "argilla")
_PAIR_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ToolConfig:
    """How the annotation-tool formats map a project onto prefloop's pairs."""

    label_config: str | None = None  # Label Studio labeling config (XML file): data keys, control
    question: str | None = None  # the control (Label Studio) or question (Argilla) to read
    choices: tuple[tuple[str, str], ...] = ()  # extra (choice text, verdict) pairs to accept


@dataclass(frozen=True)
class Vote:
    """One annotator's answer; `verdict` is relative to the record's response_1/response_2."""

    who: str
    verdict: str


@dataclass
class ToolPair:
    """A pair read from an annotation tool, with the votes of the people who answered it."""

    pair: PairRecord  # verdict None: the votes carry the labels
    votes: list[Vote] = field(default_factory=list)


@dataclass(frozen=True)
class Suggestion:
    """A verdict prefloop offers a tool as its pre-annotation (relative to the stored A/B)."""

    verdict: str
    score: float | None  # the probability of the verdict, when known
    agent: str  # who made it: "judge:MODEL" or "ensemble:vN"


# choice texts read as verdicts, lower-cased; `a`/`b` are the first and second response
CHOICE_WORDS: dict[str, str] = {
    **dict.fromkeys(
        ("a", "response a", "a is better", "a better", "left", "left is better", "first", "1"), "a"
    ),
    **dict.fromkeys(
        ("b", "response b", "b is better", "b better", "right", "right is better", "second", "2"),
        "b",
    ),
    **dict.fromkeys(("tie", "equal", "same", "both good", "both are good", "equally good"), "tie"),
    **dict.fromkeys(("both_bad", "both bad", "both are bad", "neither", "none"), "both_bad"),
}


def choice_verdict(text: object, where: str, config: ToolConfig, names: Sequence[str] = ()) -> str:
    """The verdict a choice (label, option) stands for; `names` are the A and B field names,
    which also stand for their response. Raises RowError naming `where` otherwise."""
    if not isinstance(text, str):
        raise RowError(where, f"must be a choice text, got {type(text).__name__}")
    extra = {k.strip().lower(): v for k, v in config.choices}
    key = text.strip().lower()
    if names and key == names[0].lower():
        return "a"
    if names and key == names[1].lower():
        return "b"
    verdict = extra.get(key) or CHOICE_WORDS.get(key)
    if verdict is not None and verdict not in VERDICTS:
        raise RowError(
            where, f"--choice maps {text!r} to {verdict!r}: use one of {', '.join(VERDICTS)}"
        )
    if verdict is None:
        raise RowError(
            where,
            f"choice {text!r} is not one prefloop reads as a verdict (it reads A/B, "
            "left/right, the response field names, tie, both bad and the like); map it with "
            f"`--choice '{text}=a'` (or =b, =tie, =both_bad)",
        )
    return verdict


def pair_of(
    prompt: object,
    response_1: object,
    response_2: object,
    fields: tuple[str, str, str],
    shape: ShapeConfig,
) -> PairRecord:
    """The pair these values make, checked as any imported pair (`data.shapes`, the `pairs`
    shape: caps, a user turn, two different responses); a RowError names the tool's own
    field (`fields`: where the prompt and the two responses came from)."""
    row = {"prompt": prompt, "response_a": response_1, "response_b": response_2}
    try:
        record = parse_row(row, "pairs", shape)
    except RowError as exc:
        names = dict(zip(("prompt", "response_a", "response_b"), fields, strict=True))
        head, dot, rest = (exc.field or "").partition("[")
        field = names.get(head, exc.field) + (dot + rest if head in names else "")
        raise RowError(field, exc.message) from None
    assert isinstance(record, PairRecord)
    return record


def stored_pair_id(pair: PairRecord) -> str:
    """The id prefloop gives this pair (content-hashed: the same in every store)."""
    a, b, _ = canonical_order(response_id(pair.response_1), response_id(pair.response_2))
    return pair_id(prompt_id(pair.messages), a, b)


def check_pair_id(pair: PairRecord, carried: object, where: str) -> None:
    """A prefloop pair id that travelled through the tool must still match the texts."""
    if isinstance(carried, str) and _PAIR_ID.match(carried) and carried != stored_pair_id(pair):
        raise RowError(
            where,
            f"is prefloop pair {carried}, but the prompt or responses no longer hash to it: "
            "were the texts edited in the tool? Restore them, or drop the pair id to import "
            "the edited texts as a new pair",
        )


def votes_by_annotator(
    records: Iterable[Record | ToolPair],
) -> tuple[list[Record], dict[str, list[PairRecord]]]:
    """The records as `data.ingest` takes them: every pair unlabelled, and per annotator the
    pairs they voted on with their verdicts (one ingest each, with who = the annotator)."""
    plain: list[Record] = []
    votes: dict[str, list[PairRecord]] = {}
    for record in records:
        if not isinstance(record, ToolPair):
            plain.append(record)
            continue
        plain.append(record.pair)
        for vote in record.votes:
            votes.setdefault(vote.who, []).append(replace(record.pair, verdict=vote.verdict))
    return plain, votes
