"""Argilla v2: read and write datasets in the `to_disk` and Hub forms.

A dataset folder holds ``.argilla/settings.json`` (fields, questions, guidelines) and
``.argilla/dataset.json``, and its records either as ``records.json`` (the ``to_disk`` form:
a list of ``{"id", "fields", "responses": {question: [{"value", "user_id", "status"?}]},
"suggestions": {question: {"value", "score", "agent"}}, ...}``) or as Parquet files (the
Hub form that ``Dataset.to_hub`` pushes: one row per record, fields as columns, and
``<question>.responses``, ``<question>.responses.users``, ``<question>.responses.status``,
``<question>.suggestion``... columns; download one with
``hf download --repo-type dataset REPO --local-dir DIR``).

The preference is one question (``--question`` picks it when there are several): a
``label_selection`` question whose labels name the two response fields (or say A, B, tie,
both bad), or a ``ranking`` question over the two response fields (the first-ranked wins).
The response fields are the ones the question's values name, else the first known pair of
names (``response_a``/``response_b``, ``response1``/``response2``...); the prompt is the
first other field (a ``chat`` field is read as the conversation). Each submitted response is
one human label with ``argilla:<user id>`` as ``who`` (``argilla`` without one); draft and discarded responses are left
out (Argilla 2.8's ``to_disk`` writes no status: its responses all read as submitted).
Suggestions are read past (`data.tool_records`).

`write_argilla` writes prefloop's pairs in both forms in one folder: load it with
``rg.Dataset.from_disk(DIR, client=...)``, or upload it as a Hub dataset
(``hf upload --repo-type dataset USER/NAME DIR``) for ``rg.Dataset.from_hub(USER/NAME,
settings="auto")``. It holds a chat field ``prompt``, text fields
``response_a``/``response_b``, a label question ``preference`` (a, b, tie, both_bad), the
pair id as the record id and prefloop's verdict as the suggestion.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.errors import ConfigError, ImportValidationError, RowProblem
from data.readers import RawRow, ReadLimits, read_source
from data.shapes import RowError, ShapeConfig
from data.store import PairView
from data.tool_records import (
    Suggestion,
    ToolConfig,
    ToolPair,
    Vote,
    check_pair_id,
    choice_verdict,
    pair_of,
)

SETTINGS = Path(".argilla") / "settings.json"
DATASET = Path(".argilla") / "dataset.json"
RECORDS = "records.json"
HUB_RECORDS = Path("data") / "train-00000-of-00001.parquet"
QUESTION = "preference"
LABELS = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}
PROMPT_FIELDS = ("prompt", "instruction", "question", "input", "messages", "conversation")
RESPONSE_FIELDS = (
    ("response_a", "response_b"),
    ("response1", "response2"),
    ("response-1", "response-2"),
    ("completion_a", "completion_b"),
    ("answer_a", "answer_b"),
    ("answer1", "answer2"),
    ("chosen", "rejected"),
)


def is_argilla_folder(path: Path) -> bool:
    return path.is_dir() and (path / SETTINGS).is_file()


@dataclass(frozen=True)
class Layout:
    """Which question holds the preference and which fields hold the texts."""

    question: str
    kind: str  # label_selection or ranking
    prompt: str
    a: str
    b: str
    values: tuple[str, ...]  # the question's option values


def _type(item: Mapping[str, Any]) -> str | None:
    settings = item.get("settings")
    return item.get("type") or (settings.get("type") if isinstance(settings, dict) else None)


def read_layout(folder: Path, config: ToolConfig) -> Layout:
    """The layout from the folder's settings; ConfigError says what is missing."""
    where = folder / SETTINGS
    try:
        settings = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}: not readable Argilla settings ({exc})") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}: Argilla settings must be a JSON object")
    fields = [f for f in settings.get("fields") or [] if isinstance(f, dict) and f.get("name")]
    questions = [
        q
        for q in settings.get("questions") or []
        if isinstance(q, dict) and _type(q) in ("label_selection", "ranking")
    ]
    if config.question:
        questions = [q for q in questions if q.get("name") == config.question]
    if len(questions) != 1:
        found = ", ".join(repr(q.get("name")) for q in questions) or "none"
        raise ConfigError(
            f"{where}: needs exactly one label or ranking question"
            f"{f' named {config.question!r}' if config.question else ''} to read the "
            f"preference from (found {found}); name it with --question"
        )
    question = questions[0]
    options = (question.get("settings") or {}).get("options") or []
    values = tuple(str(o.get("value")) for o in options if isinstance(o, dict))
    names = [str(f["name"]) for f in fields]
    named = [v for v in values if v in names]
    if len(named) == 2:
        a, b = sorted(named, key=names.index) if _type(question) == "label_selection" else named
    else:
        a, b = next((p for p in RESPONSE_FIELDS if p[0] in names and p[1] in names), ("", ""))
    if not a:
        raise ConfigError(
            f"{where}: cannot tell which two fields are the responses (fields: "
            f"{', '.join(names) or 'none'}); the question's values should name them"
        )
    rest = [n for n in names if n not in (a, b)]
    prompt = next((n for n in PROMPT_FIELDS if n in rest), rest[0] if rest else "")
    if not prompt:
        raise ConfigError(f"{where}: no prompt field besides the responses {a!r} and {b!r}")
    if _type(question) == "ranking" and len(values) != 2:
        raise ConfigError(
            f"{where}: ranking question {question.get('name')!r} must rank two values"
        )
    return Layout(str(question["name"]), str(_type(question)), prompt, a, b, values)


def read_rows(
    folder: Path, *, split: str | None, limits: ReadLimits, max_bytes: int
) -> Iterator[RawRow]:
    """The records of a `to_disk` folder (records.json) or of a Hub folder (Parquet files),
    each in the `to_disk` shape; located by file and row."""
    records = folder / RECORDS
    if records.is_file():
        yield from read_source(str(records), max_bytes=max_bytes, limits=limits)
        return
    files = sorted(p for p in folder.rglob("*.parquet") if ".argilla" not in p.parts)
    if split is not None or any(p.name.startswith("train-") for p in files):
        chosen = split or "train"
        files = [p for p in files if p.name.startswith(f"{chosen}-") or p.parent.name == chosen]
    if not files:
        raise ImportValidationError(
            [
                RowProblem(
                    str(folder),
                    None,
                    None,
                    f"Argilla folder has no {RECORDS} and no Parquet records",
                )
            ]
        )
    for path in files:
        for raw in read_source(str(path), max_bytes=max_bytes, limits=limits):
            if raw.value is not None and "fields" not in raw.value:
                raw.value = _nested(raw.value)
            yield raw


def _nested(row: dict[str, Any]) -> dict[str, Any]:
    """A Hub row (flattened columns) in the `to_disk` shape."""
    responses: dict[str, list[dict[str, Any]]] = {}
    fields: dict[str, Any] = {}
    for key, value in row.items():
        if key.endswith(".responses") and isinstance(value, list):
            question = key.removesuffix(".responses")
            users = row.get(f"{key}.users") or [None] * len(value)
            statuses = row.get(f"{key}.status") or [None] * len(value)
            responses[question] = [
                {"value": v, "user_id": u, "status": s}
                for v, u, s in zip(value, users, statuses, strict=False)
            ]
        elif "." not in key and key not in ("id", "status", "_server_id"):
            fields[key] = value
    return {"id": row.get("id"), "fields": fields, "responses": responses}


def parse_record(
    row: Mapping[str, Any], where: Layout, config: ToolConfig, shape: ShapeConfig
) -> ToolPair:
    """One record as a pair with its annotators' votes; RowError names the field."""
    fields = row.get("fields")
    if not isinstance(fields, dict):
        raise RowError("fields", "must be an object holding the record's fields")
    pair = pair_of(
        fields.get(where.prompt),
        fields.get(where.a),
        fields.get(where.b),
        (f"fields.{where.prompt}", f"fields.{where.a}", f"fields.{where.b}"),
        shape,
    )
    check_pair_id(pair, row.get("id"), "id")
    responses = row.get("responses") or {}
    if not isinstance(responses, dict):
        raise RowError("responses", "must be an object: question -> list of responses")
    answers = responses.get(where.question) or []
    if not isinstance(answers, list):
        raise RowError(f"responses.{where.question}", "must be a list of responses")
    votes = []
    for index, answer in enumerate(answers):
        at = f"responses.{where.question}[{index}]"
        if not isinstance(answer, dict):
            raise RowError(at, "must be an object with value and user_id")
        if answer.get("status") not in (None, "submitted"):
            continue  # a draft or a discarded record: no answer
        user = answer.get("user_id")
        if user is not None and (not isinstance(user, str) or not user.strip()):
            raise RowError(f"{at}.user_id", f"must name the annotator, got {user!r}")
        votes.append(
            Vote(
                f"argilla:{user.strip()}" if user else "argilla",
                _verdict(answer.get("value"), f"{at}.value", where, config),
            )
        )
    return ToolPair(pair, votes)


def _verdict(value: Any, at: str, where: Layout, config: ToolConfig) -> str:
    names = (where.a, where.b)
    if where.kind == "label_selection":
        return choice_verdict(value, at, config, names)
    # ranking: a list of values best first (the SDK), or of {"value", "rank"} (the server)
    if not isinstance(value, list) or len(value) != 2:
        raise RowError(at, f"must rank the two responses, got {value!r}")
    if all(isinstance(v, dict) for v in value):
        ranks = {v.get("value"): v.get("rank") for v in value if isinstance(v.get("value"), str)}
        if sorted(ranks) != sorted(where.values) or not all(
            isinstance(r, int) and not isinstance(r, bool) for r in ranks.values()
        ):
            raise RowError(
                at, f"must rank {' and '.join(where.values)} with whole numbers, got {value!r}"
            )
        if len(set(ranks.values())) == 1:
            return "tie"
        value = sorted(ranks, key=lambda v: ranks[v])
    if not all(isinstance(v, str) for v in value) or sorted(value) != sorted(where.values):
        raise RowError(at, f"must rank {' and '.join(where.values)}, got {value!r}")
    first = value[0]
    position = where.values.index(first)
    # the values name the response fields (or stand for A and B in their order)
    named = where.values[position]
    if named in names:
        return "a" if named == where.a else "b"
    return "a" if position == 0 else "b"


# -- export ----------------------------------------------------------------------------


def _item(name: str, kind: str, settings: dict[str, Any], title: str) -> dict[str, Any]:
    return {
        "id": None,
        "inserted_at": None,
        "updated_at": None,
        "name": name,
        "settings": {"type": kind, **settings},
        "title": title,
        "required": True,
        "description": None,
        "dataset_id": None,
        "type": kind,
    }


def settings_json(guidelines: str) -> dict[str, Any]:
    options = [{"value": v, "text": t, "description": None} for v, t in LABELS.items()]
    return {
        "guidelines": guidelines,
        "questions": [
            _item(
                QUESTION,
                "label_selection",
                {"options": options, "visible_options": len(options)},
                "Which response is better?",
            )
        ],
        "fields": [
            _item("prompt", "chat", {"use_markdown": True}, "Prompt"),
            _item("response_a", "text", {"use_markdown": True}, "Response A"),
            _item("response_b", "text", {"use_markdown": True}, "Response B"),
        ],
        "vectors": [],
        "metadata": [],
        "allow_extra_metadata": False,
        "distribution": {"strategy": "overlap", "min_submitted": 1},
        "mapping": None,
    }


def argilla_records(
    pairs: Sequence[PairView], suggestions: Mapping[str, Suggestion]
) -> list[dict[str, Any]]:
    records = []
    for pair in pairs:
        suggestion = suggestions.get(pair.pair_id)
        records.append(
            {
                "id": pair.pair_id,
                "fields": {
                    "prompt": pair.messages,
                    "response_a": pair.response_a,
                    "response_b": pair.response_b,
                },
                "metadata": {},
                "suggestions": {
                    QUESTION: {
                        "value": suggestion.verdict,
                        "score": suggestion.score,
                        "agent": suggestion.agent,
                    }
                }
                if suggestion
                else {},
                "responses": {},
                "vectors": {},
                "status": "pending",
                "_server_id": None,
            }
        )
    return records


def write_argilla(
    out: Path,
    pairs: Sequence[PairView],
    suggestions: Mapping[str, Suggestion],
    *,
    name: str,
    guidelines: str = "Which response to the prompt is better? Pick tie when they are equally "
    "good, both bad when neither is acceptable.",
) -> list[str]:
    """Write the dataset folder `out` (which must not exist, or be empty), in both forms: the
    `to_disk` form (records.json) and the Hub form (the same records flattened into
    data/train-00000-of-00001.parquet, as `Dataset.to_hub` pushes them). Everything is
    written under a temporary name first, so a failure leaves no half-written dataset."""
    if out.suffix:
        raise ConfigError(
            f"--out {out}: an Argilla dataset is a folder; give a name without an extension"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not an empty folder; choose a new folder")
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # a failed earlier export's leftovers
    (staging / ".argilla").mkdir(parents=True)
    dataset = {
        "id": None,
        "inserted_at": None,
        "updated_at": None,
        "name": name,
        "status": "draft",
        "guidelines": None,
        "allow_extra_metadata": False,
        "distribution": None,
        "workspace_id": None,
        "last_activity_at": None,
    }
    (staging / DATASET).write_text(json.dumps(dataset), encoding="utf-8")
    (staging / SETTINGS).write_text(json.dumps(settings_json(guidelines)), encoding="utf-8")
    records = argilla_records(pairs, suggestions)
    (staging / RECORDS).write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    _write_hub_rows(staging / HUB_RECORDS, records)
    if out.exists():
        out.rmdir()
    staging.replace(out)
    return [str(out)]


def _write_hub_rows(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """The records as `Dataset.to_hub` flattens them: fields as columns, then the question's
    responses (none yet) and suggestion columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    strings = pa.list_(pa.string())
    suggestion = [r["suggestions"].get(QUESTION, {}) for r in records]
    table = pa.table(
        {
            "id": pa.array([r["id"] for r in records], pa.string()),
            "status": pa.array([r["status"] for r in records], pa.string()),
            "_server_id": pa.array([None] * len(records), pa.string()),
            "prompt": pa.array([r["fields"]["prompt"] for r in records], pa.list_(message)),
            "response_a": pa.array([r["fields"]["response_a"] for r in records], pa.string()),
            "response_b": pa.array([r["fields"]["response_b"] for r in records], pa.string()),
            f"{QUESTION}.responses": pa.array([[] for _ in records], strings),
            f"{QUESTION}.responses.users": pa.array([[] for _ in records], strings),
            f"{QUESTION}.responses.status": pa.array([[] for _ in records], strings),
            f"{QUESTION}.suggestion": pa.array([x.get("value") for x in suggestion], pa.string()),
            f"{QUESTION}.suggestion.score": pa.array(
                [x.get("score") for x in suggestion], pa.float64()
            ),
            f"{QUESTION}.suggestion.agent": pa.array(
                [x.get("agent") for x in suggestion], pa.string()
            ),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
