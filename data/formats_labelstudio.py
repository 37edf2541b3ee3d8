"""Label Studio: read a project's JSON export, write tasks with prefloop's pre-annotations.

**Import.** A Label Studio JSON export is a list of tasks::

    {"id": 1, "data": {"prompt": ..., "answer1": ..., "answer2": ...},
     "annotations": [{"completed_by": 7 | {"id": 7, "email": ...}, "was_cancelled": false,
                      "result": [{"from_name": "cmp", "to_name": "cmp", "type": "pairwise",
                                  "value": {"selected": "left"}}]}],
     "predictions": [...]}

Two templates are read: the ``Pairwise`` tag (``value.selected`` is ``left`` or ``right``:
the first or second name of its ``toName``) and a ``Choices`` tag whose choices say A, B, tie
or both bad (``value.choices``; see `data.tool_records.CHOICE_WORDS`, and ``--choice`` for
other texts). Which data keys hold the prompt and the two responses comes from the project's
labeling config (``--label-config FILE``: the Pairwise ``toName`` objects are A and B; in a
Choices template the first text object is the prompt, the next two A and B), or, without one,
from common names (``prompt``/``question``/``instruction``..., ``response_a``/``response_b``,
``answer1``/``answer2``, ``text1``/``text2``...). A ``data.messages`` list of
``{role, content}`` (prefloop's own export) is the prompt as a conversation.

Each annotation that is not cancelled and has a result is one human label, with the
annotator as ``who``: their e-mail when the export names it (``completed_by`` as an object),
else ``labelstudio:<user id>`` (``labelstudio`` when it names nobody). A task without
annotations imports its pair unlabelled.
``predictions`` are read past (`data.tool_records`).

**Export.** `labelstudio_tasks` writes one task per pair: ``data`` holds ``pair_id``,
``prompt`` (the rendered transcript), ``messages``, ``response_a`` and ``response_b``, and
``predictions`` holds prefloop's verdict on the pair (the judge's, or the ensemble's) in the
template's result shape, so Label Studio shows it as a pre-annotation. `label_config` is the
matching labeling config. Annotations exported back from that project import onto the same
pair ids (a ``data.pair_id`` whose texts were edited is refused).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.errors import ConfigError
from data.ids import render_messages, text_hash
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

TEMPLATES = ("pairwise", "choices")
CONTROL = "preference"  # the control name of prefloop's own labeling configs
PROMPT_KEYS = ("prompt", "question", "instruction", "input", "query", "text", "context")
RESPONSE_KEYS = (
    ("response_a", "response_b"),
    ("answer1", "answer2"),
    ("text1", "text2"),
    ("response1", "response2"),
    ("answer_a", "answer_b"),
    ("completion_a", "completion_b"),
    ("output_a", "output_b"),
    ("left", "right"),
)
CHOICE_TEXT = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}
_MAX_CONFIG_BYTES = 1024**2


def is_task(row: Mapping[str, Any]) -> bool:
    """Whether a row looks like a Label Studio task (auto-detection)."""
    keys = set(row)
    return isinstance(row.get("data"), dict) and (
        keys == {"data"} or bool({"annotations", "predictions", "id"} & keys)
    )


@dataclass(frozen=True)
class Layout:
    """Where a project keeps the texts, and which control holds the preference."""

    prompt: str | None  # data key of the prompt (None: guess per task)
    a: str | None  # data key of the first (left) response
    b: str | None
    control: str | None  # the result's from_name to read (None: any Pairwise/Choices result)


def layout(config: ToolConfig) -> Layout:
    """The layout from `config.label_config` (a labeling config file), else guessed per task."""
    if not config.label_config:
        return Layout(None, None, None, config.question)
    path = Path(config.label_config)
    try:
        raw = path.read_bytes()[: _MAX_CONFIG_BYTES + 1]
    except OSError as exc:
        raise ConfigError(f"--label-config {path}: cannot read it ({exc})") from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"--label-config {path}: over {_MAX_CONFIG_BYTES} bytes")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise ConfigError(f"--label-config {path}: not a labeling config (XML): {exc}") from None
    keys = {  # object name -> data key, for objects whose value is a $variable
        el.get("name"): el.get("value", "")[1:]
        for el in root.iter()
        if el.get("name") and el.get("value", "").startswith("$")
    }
    controls = [el for el in root.iter() if el.tag in ("Pairwise", "Choices")]
    if config.question:
        controls = [el for el in controls if el.get("name") == config.question]
    if len(controls) != 1:
        found = ", ".join(f"{el.tag} {el.get('name')!r}" for el in controls) or "none"
        raise ConfigError(
            f"--label-config {path}: needs exactly one Pairwise or Choices control"
            f"{f' named {config.question!r}' if config.question else ''} (found {found}); "
            "name the one to read with --question"
        )
    control = controls[0]
    if control.tag == "Pairwise":
        names = [n.strip() for n in (control.get("toName") or "").split(",")]
        if len(names) != 2 or not all(n in keys for n in names):
            raise ConfigError(
                f"--label-config {path}: Pairwise {control.get('name')!r} must name two objects "
                'with $data values in toName (toName="a,b")'
            )
        a, b = keys[names[0]], keys[names[1]]
        others = [k for k in keys.values() if k not in (a, b)]
        return Layout(others[0] if others else None, a, b, control.get("name"))
    texts = list(dict.fromkeys(keys.values()))
    if len(texts) < 3:
        raise ConfigError(
            f"--label-config {path}: a Choices template needs three text objects with $data "
            f"values (prompt, then the two responses); found {', '.join(texts) or 'none'}"
        )
    return Layout(texts[0], texts[1], texts[2], control.get("name"))


def parse_task(
    row: Mapping[str, Any], where: Layout, config: ToolConfig, shape: ShapeConfig
) -> ToolPair:
    """One task as a pair with its annotators' votes; RowError names the field."""
    data = row.get("data")
    if not isinstance(data, dict):
        raise RowError("data", "must be an object holding the task's texts")
    a_key, b_key = where.a, where.b
    if a_key is None or b_key is None:
        a_key, b_key = next(
            (keys for keys in RESPONSE_KEYS if keys[0] in data and keys[1] in data), (None, None)
        )
    if a_key is None or b_key is None:
        raise RowError(
            "data",
            f"has no two responses prefloop knows (fields {', '.join(sorted(map(str, data)))}); "
            "give the project's labeling config with --label-config",
        )
    if isinstance(data.get("messages"), list):
        prompt_key = "messages"
    else:
        prompt_key = where.prompt or next((k for k in PROMPT_KEYS if k in data), None)
    if prompt_key is None:
        raise RowError(
            "data",
            f"has no prompt field ({', '.join(PROMPT_KEYS)}); give the project's labeling "
            "config with --label-config",
        )
    pair = pair_of(
        data.get(prompt_key),
        data.get(a_key),
        data.get(b_key),
        (f"data.{prompt_key}", f"data.{a_key}", f"data.{b_key}"),
        shape,
    )
    check_pair_id(pair, data.get("pair_id"), "data.pair_id")
    votes: list[Vote] = []
    annotations = row.get("annotations") or []
    if not isinstance(annotations, list):
        raise RowError("annotations", "must be a list of annotations")
    for index, annotation in enumerate(annotations):
        field = f"annotations[{index}]"
        if not isinstance(annotation, dict):
            raise RowError(field, "must be an object")
        if annotation.get("was_cancelled") is True:
            continue  # skipped by the annotator: no answer
        verdict = _annotation_verdict(annotation, field, where, config, (a_key, b_key))
        if verdict is not None:
            votes.append(Vote(_annotator(annotation.get("completed_by"), field), verdict))
    return ToolPair(pair, votes)


def _annotator(completed_by: Any, field: str) -> str:
    """The annotator's e-mail, else `labelstudio:<id>`; plain `labelstudio` when the
    annotation names nobody (an API-made annotation may not)."""
    if completed_by is None or completed_by == {}:
        return "labelstudio"
    if isinstance(completed_by, dict):
        email = completed_by.get("email")
        if isinstance(email, str) and email.strip():
            return email.strip()
        completed_by = completed_by.get("id")
    if (
        isinstance(completed_by, bool)
        or not isinstance(completed_by, int | str)
        or completed_by == ""
    ):
        raise RowError(
            f"{field}.completed_by",
            f"must name the annotator (a user id, or an object with id/email), got {completed_by!r}",
        )
    return f"labelstudio:{completed_by}"


def _annotation_verdict(
    annotation: Mapping[str, Any],
    field: str,
    where: Layout,
    config: ToolConfig,
    names: tuple[str, str],
) -> str | None:
    results = annotation.get("result") or []
    if not isinstance(results, list):
        raise RowError(f"{field}.result", "must be a list of results")
    found: list[tuple[str, str]] = []  # (from_name, verdict)
    for index, result in enumerate(results):
        at = f"{field}.result[{index}]"
        if not isinstance(result, dict):
            raise RowError(at, "must be an object")
        kind, name = result.get("type"), result.get("from_name")
        if where.control is not None and name != where.control:
            continue
        if kind not in ("pairwise", "choices"):
            continue  # another control (a comment box, a rating): not the preference
        value = result.get("value")
        if not isinstance(value, dict):
            raise RowError(f"{at}.value", "must be an object")
        if kind == "pairwise":
            selected = value.get("selected")
            if selected not in ("left", "right"):
                raise RowError(
                    f"{at}.value.selected", f"must be 'left' or 'right', got {selected!r}"
                )
            found.append((str(name), "a" if selected == "left" else "b"))
        else:
            choices = value.get("choices")
            if not isinstance(choices, list) or len(choices) != 1:
                raise RowError(
                    f"{at}.value.choices", f"must hold exactly one choice, got {choices!r}"
                )
            try:
                verdict = choice_verdict(choices[0], f"{at}.value.choices[0]", config, names)
            except RowError as exc:
                if where.control is None:  # maybe another Choices control (a rating, a flag)
                    exc = RowError(
                        exc.field,
                        f"{exc.message}; or, if {name!r} is not the preference control, name "
                        "the one to read with --question",
                    )
                raise exc from None
            found.append((str(name), verdict))
    controls = {name for name, _ in found}
    if len(controls) > 1:
        raise RowError(
            f"{field}.result",
            f"answers several preference controls ({', '.join(sorted(controls))}); name the one "
            "to read with --question",
        )
    verdicts = {verdict for _, verdict in found}
    if len(verdicts) > 1:
        raise RowError(
            f"{field}.result", f"gives different verdicts ({', '.join(sorted(verdicts))})"
        )
    return found[0][1] if found else None


# -- export ----------------------------------------------------------------------------


def label_config(template: str = "pairwise") -> str:
    """The labeling config that shows prefloop's tasks (paste it into the project's settings)."""
    if template == "pairwise":
        control = f'  <Pairwise name="{CONTROL}" toName="response_a,response_b"/>\n'
        return (
            '<View>\n  <Header value="Prompt"/>\n  <Text name="prompt" value="$prompt"/>\n'
            '  <Header value="Click the better response"/>\n'
            f"{control}"
            '  <Text name="response_a" value="$response_a"/>\n'
            '  <Text name="response_b" value="$response_b"/>\n</View>\n'
        )
    if template == "choices":
        options = "".join(f'    <Choice value="{text}"/>\n' for text in CHOICE_TEXT.values())
        return (
            '<View>\n  <Header value="Prompt"/>\n  <Text name="prompt" value="$prompt"/>\n'
            '  <Header value="Response A"/>\n  <Text name="response_a" value="$response_a"/>\n'
            '  <Header value="Response B"/>\n  <Text name="response_b" value="$response_b"/>\n'
            f'  <Choices name="{CONTROL}" toName="prompt" choice="single" showInline="true">\n'
            f"{options}  </Choices>\n</View>\n"
        )
    raise ConfigError(f"Label Studio template {template!r} is not one of {', '.join(TEMPLATES)}")


def result(verdict: str, template: str) -> dict[str, Any] | None:
    """One result of the template's shape for `verdict` (A = left); None where the template
    cannot say it (Pairwise has no tie)."""
    if template == "pairwise":
        if verdict not in ("a", "b"):
            return None
        value: dict[str, Any] = {"selected": "left" if verdict == "a" else "right"}
        return {"from_name": CONTROL, "to_name": CONTROL, "type": "pairwise", "value": value}
    return {
        "from_name": CONTROL,
        "to_name": "prompt",
        "type": "choices",
        "value": {"choices": [CHOICE_TEXT[verdict]]},
    }


def labelstudio_tasks(
    pairs: Sequence[PairView], suggestions: Mapping[str, Suggestion], template: str = "pairwise"
) -> list[dict[str, Any]]:
    """One task per pair, with its suggestion (if any) as a prediction."""
    label_config(template)  # checks the template's name
    tasks = []
    for pair in pairs:
        task: dict[str, Any] = {
            "data": {
                "pair_id": pair.pair_id,
                "prompt": render_messages(pair.messages),
                "messages": pair.messages,
                "response_a": pair.response_a,
                "response_b": pair.response_b,
            }
        }
        suggestion = suggestions.get(pair.pair_id)
        shaped = result(suggestion.verdict, template) if suggestion else None
        if suggestion and shaped:
            shaped["id"] = text_hash(f"{pair.pair_id}\0{suggestion.agent}")[:10]
            prediction: dict[str, Any] = {"model_version": suggestion.agent, "result": [shaped]}
            if suggestion.score is not None:
                prediction["score"] = round(suggestion.score, 4)
            task["predictions"] = [prediction]
        tasks.append(task)
    return tasks


def write_labelstudio(
    out: Path, pairs: Sequence[PairView], suggestions: Mapping[str, Suggestion], template: str
) -> list[str]:
    """Write `out` (.json: the tasks to import into Label Studio) and beside it
    `<stem>.label_config.xml`; returns both paths."""
    if out.suffix.lower() != ".json":
        raise ConfigError(f"--out {out}: Label Studio tasks are written as one .json file")
    tasks = labelstudio_tasks(pairs, suggestions, template)
    out.parent.mkdir(parents=True, exist_ok=True)
    config_path = out.with_name(f"{out.stem}.label_config.xml")
    _atomic_write(out, json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")
    _atomic_write(config_path, label_config(template))
    return [str(out), str(config_path)]


def _atomic_write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
