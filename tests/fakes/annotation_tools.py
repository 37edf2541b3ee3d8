"""Answer exported tasks the way Label Studio and Argilla write their users' answers.

The shapes are the tools' own (tests/fixtures/interop was written with label-studio-sdk and
argilla; scripts/interop_fixtures.py): a Label Studio annotation is
``{"completed_by", "result": [{"from_name", "to_name", "type", "value"}], "was_cancelled"}``
added to the task; an Argilla response is ``{"value", "user_id"[, "status"]}`` under the
question's name in the record's ``responses``.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "interop"
CHOICE = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}


def labelstudio_result(verdict: str, template: str = "pairwise") -> dict[str, Any]:
    if template == "pairwise":
        selected = {"a": "left", "b": "right"}[verdict]
        return {
            "id": uuid.uuid4().hex[:10],
            "from_name": "preference",
            "to_name": "preference",
            "type": "pairwise",
            "value": {"selected": selected},
            "origin": "manual",
        }
    return {
        "id": uuid.uuid4().hex[:10],
        "from_name": "preference",
        "to_name": "prompt",
        "type": "choices",
        "value": {"choices": [CHOICE[verdict]]},
        "origin": "manual",
    }


def annotate_labelstudio(
    tasks_path: Path,
    out: Path,
    votes: dict[str, list[tuple[Any, str]]],
    template: str = "pairwise",
) -> Path:
    """Write `out`: the exported tasks as a Label Studio JSON export after annotation.
    `votes`: pair_id -> [(completed_by, verdict)], completed_by an int id or a user object."""
    tasks = json.loads(tasks_path.read_text())
    exported = []
    for number, task in enumerate(tasks, 1):
        pair = task["data"]["pair_id"]
        annotations = [
            {
                "id": number * 100 + k,
                "completed_by": who,
                "result": [labelstudio_result(verdict, template)],
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": "2026-12-01T10:00:00.000000Z",
                "updated_at": "2026-12-01T10:00:00.000000Z",
                "lead_time": 3.0,
                "task": number,
                "project": 1,
            }
            for k, (who, verdict) in enumerate(votes.get(pair, []))
        ]
        exported.append({"id": number, **task, "annotations": annotations, "project": 1})
    out.write_text(json.dumps(exported))
    return out


def annotate_argilla(
    folder: Path, out: Path, votes: dict[str, list[tuple[str, str]]], *, status: bool = False
) -> Path:
    """Copy the `to_disk` folder to `out` with responses: pair_id -> [(user_id, label)].
    Argilla 2.8's `to_disk` writes no response status; `status=True` writes "submitted"."""
    shutil.copytree(folder, out)
    records = json.loads((out / "records.json").read_text())
    for record in records:
        answers = [
            {"value": label, "user_id": user, **({"status": "submitted"} if status else {})}
            for user, label in votes.get(record["id"], [])
        ]
        record["responses"] = {"preference": answers} if answers else {}
    (out / "records.json").write_text(json.dumps(records))
    return out
