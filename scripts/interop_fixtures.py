"""Write the Label Studio and Argilla fixtures of tests/fixtures/interop with the tools' own code.

prefloop does not depend on `argilla` or `label-studio-sdk` (their pins clash with ours), so the
fixtures are made once, in a separate virtual environment, and committed:

    python -m venv --system-site-packages .fmtvenv   # any folder outside the project's venv
    .fmtvenv/bin/pip install argilla==2.8.0 label-studio-sdk==2.1.2
    .fmtvenv/bin/python scripts/interop_fixtures.py
    # and to load prefloop's own exports with the same libraries:
    .fmtvenv/bin/python scripts/interop_fixtures.py --check TASKS.json ARGILLA_FOLDER

Label Studio: the annotation and prediction results are the SDK's regions
(`LabelInterface(config).get_control(name).label(...)`), and the Choices tasks are checked with the
SDK's `validate_annotation` (a Pairwise region names its own control as `to_name`, which
the SDK's validator does not accept, though its `label()` and the editor write it so); the task envelope around them
(ids, `completed_by`, `was_cancelled`, `lead_time`, ...) follows the documented JSON export
(a server writes exports; no server runs here). Argilla: records are `rg.Record`s with
`rg.Response`s and `rg.Suggestion`s; the `to_disk` folder is written by the calls
`Dataset.to_disk` makes (`Settings.to_json`, the dataset model dump, `JsonIO.to_json`), and the
Hub folder by the calls `Dataset.to_hub` makes (`HFDatasetsIO.to_datasets`, parquet, the
`.argilla/` files). Only the client's connection check is skipped: there is no server.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "interop"

PAIRS = [
    ("What is the capital of France?", "Paris.", "Lyon, I think."),
    ("Name a prime number above 10.", "11 is prime.", "12 is prime."),
    ("Say hello in Spanish.", "Hola.", "Bonjour."),
    ("How many legs has a spider?", "Eight.", "Six."),
]

PAIRWISE_CONFIG = """<View>
  <Header value="Which answer is better?"/>
  <Text name="question" value="$question"/>
  <Pairwise name="comparison" toName="answer1,answer2" selectionStyle="background-color: #eee"/>
  <Text name="answer1" value="$answer1"/>
  <Text name="answer2" value="$answer2"/>
</View>
"""

CHOICES_CONFIG = """<View>
  <Text name="prompt" value="$prompt"/>
  <Text name="left" value="$left"/>
  <Text name="right" value="$right"/>
  <Choices name="preference" toName="prompt" choice="single" showInline="true">
    <Choice value="Left is better"/>
    <Choice value="Right is better"/>
    <Choice value="Tie"/>
    <Choice value="Both are bad"/>
  </Choices>
</View>
"""

USERS = {
    1: {"id": 1, "email": "alice@example.com", "first_name": "Alice", "last_name": ""},
    2: {"id": 2, "email": "bob@example.com", "first_name": "Bob", "last_name": ""},
}


def _annotation(
    task_id: int, number: int, regions: list, user: int, *, expanded: bool, cancelled: bool = False
) -> dict:
    return {
        "id": task_id * 10 + number,
        "completed_by": USERS[user] if expanded else user,
        "result": [json.loads(r.to_json()) for r in regions],
        "was_cancelled": cancelled,
        "ground_truth": False,
        "created_at": "2026-11-30T10:00:00.000000Z",
        "updated_at": "2026-11-30T10:00:05.000000Z",
        "lead_time": 5.2,
        "result_count": 0,
        "task": task_id,
        "project": 7,
        "parent_prediction": None,
        "parent_annotation": None,
    }


def labelstudio() -> None:
    from label_studio_sdk.label_interface import LabelInterface

    out = OUT / "labelstudio"
    out.mkdir(parents=True, exist_ok=True)

    li = LabelInterface(PAIRWISE_CONFIG)
    pw = li.get_control("comparison")
    votes = [  # per task: (user, selected, expanded completed_by, cancelled)
        [(1, "left", True, False), (2, "left", False, False)],
        [(1, "left", True, False), (2, "right", False, False)],
        [(2, "right", False, True)],  # cancelled: no label
        [],  # not annotated yet: the pair alone
    ]
    tasks = []
    for number, ((prompt, good, bad), task_votes) in enumerate(zip(PAIRS, votes, strict=True), 1):
        # task 3 shows the better answer on the right
        left, right = (bad, good) if number == 3 else (good, bad)
        task = {
            "id": number,
            "data": {"question": prompt, "answer1": left, "answer2": right},
            "annotations": [
                _annotation(number, k, [pw.label(sel)], user, expanded=exp, cancelled=canc)
                for k, (user, sel, exp, canc) in enumerate(task_votes, 1)
            ],
            "predictions": [
                {
                    "id": 100 + number,
                    "model_version": "some-model",
                    "score": 0.7,
                    "result": [json.loads(pw.label("left").to_json())],
                    "created_ago": "3 hours",
                }
            ],
            "drafts": [],
            "file_upload": "pairs.json",
            "created_at": "2026-11-30T09:00:00.000000Z",
            "updated_at": "2026-11-30T10:00:05.000000Z",
            "inner_id": number,
            "total_annotations": len(task_votes),
            "cancelled_annotations": sum(v[3] for v in task_votes),
            "total_predictions": 1,
            "project": 7,
            "updated_by": None,
        }
        assert all(task["data"].get(o.value_name) for o in li.objects), (
            task
        )  # validate_task's own check
        # no validate_annotation here: the SDK's validator looks for `to_name` among the object
        # tags, and a Pairwise region (from the SDK's own `label()`, as from the editor) names
        # the Pairwise control itself
        tasks.append(task)
    (out / "pairwise_config.xml").write_text(PAIRWISE_CONFIG)
    (out / "pairwise_export.json").write_text(json.dumps(tasks, indent=1) + "\n")

    li = LabelInterface(CHOICES_CONFIG)
    choices = li.get_control("preference")
    picks = ["Left is better", "Right is better", "Tie", "Both are bad"]
    tasks = []
    for number, ((prompt, good, bad), pick) in enumerate(zip(PAIRS, picks, strict=True), 1):
        task = {
            "id": number,
            "data": {"prompt": prompt, "left": good, "right": bad},
            "annotations": [_annotation(number, 1, [choices.label([pick])], 1, expanded=True)],
            "predictions": [],
            "project": 8,
        }
        assert all(task["data"].get(o.value_name) for o in li.objects), (
            task
        )  # validate_task's own check
        assert li.validate_annotation(task["annotations"][0])
        tasks.append(task)
    (out / "choices_config.xml").write_text(CHOICES_CONFIG)
    (out / "choices_export.json").write_text(json.dumps(tasks, indent=1) + "\n")


def argilla() -> None:
    os.environ.setdefault("ARGILLA_API_URL", "http://127.0.0.1:9")
    os.environ.setdefault("ARGILLA_API_KEY", "no-server")
    from argilla._api._client import APIClient

    APIClient._validate_connection = lambda self: None  # no server: skip the login check

    import argilla as rg
    from argilla.records._io import HFDatasetsIO, JsonIO

    workspace = rg.Workspace(name="argilla", id=uuid.UUID("00000000-0000-4000-8000-0000000000aa"))
    alice = uuid.UUID("00000000-0000-4000-8000-00000000a11c")
    bob = uuid.UUID("00000000-0000-4000-8000-000000000b0b")

    # to_disk: a ranking question over the two responses. Argilla 2.8's `to_disk` writes no
    # response status (Record.to_dict drops it): every response on disk reads as submitted.
    settings = rg.Settings(
        guidelines="Rank the responses, best first.",
        fields=[
            rg.TextField(name="instruction"),
            rg.TextField(name="response1"),
            rg.TextField(name="response2"),
        ],
        questions=[rg.RankingQuestion(name="ranking", values=["response1", "response2"])],
    )
    dataset = rg.Dataset(name="ranked", workspace=workspace, settings=settings)
    first, second = ["response1", "response2"], ["response2", "response1"]
    answers = [  # per record: [(user, ranking)], suggested ranking
        ([(alice, first), (bob, first)], first),
        ([(alice, first), (bob, second)], None),  # split vote
        ([(bob, second)], second),
        ([], first),  # nobody answered: the pair, no label
    ]
    records = []
    for number, ((prompt, good, bad), (responses, suggestion)) in enumerate(
        zip(PAIRS, answers, strict=True), 1
    ):
        r1, r2 = (bad, good) if number == 3 else (good, bad)
        records.append(
            rg.Record(
                id=f"rec-{number}",
                fields={"instruction": prompt, "response1": r1, "response2": r2},
                responses=[
                    rg.Response("ranking", v, user_id=u, status="submitted") for u, v in responses
                ]
                or None,
                suggestions=[rg.Suggestion("ranking", suggestion, score=0.8, agent="gpt-judge")]
                if suggestion
                else None,
            )
        )
    disk = OUT / "argilla_disk"
    shutil.rmtree(disk, ignore_errors=True)
    (disk / ".argilla").mkdir(parents=True)
    with open(disk / ".argilla" / "dataset.json", "w") as handle:
        json.dump(dataset.api_model().model_dump(mode="json"), handle)
    settings.to_json(path=disk / ".argilla" / "settings.json")
    JsonIO.to_json(records, path=disk / "records.json")

    # Hub: a label question whose labels name the response fields; records flattened to
    # parquet, the suggestion column cast to a ClassLabel (as `to_hub` does)
    settings = rg.Settings(
        fields=[
            rg.TextField(name="prompt"),
            rg.TextField(name="completion_a"),
            rg.TextField(name="completion_b"),
        ],
        questions=[
            rg.LabelQuestion(name="preference", labels=["completion_a", "completion_b", "tie"])
        ],
    )
    dataset = rg.Dataset(name="preferences", workspace=workspace, settings=settings)
    answers = [
        (
            [(alice, "completion_a", "submitted"), (bob, "completion_a", "submitted")],
            "completion_a",
        ),
        ([(alice, "completion_b", "submitted"), (bob, "completion_a", "draft")], "completion_a"),
        ([(bob, "tie", "submitted")], "completion_b"),
        ([(alice, "completion_b", "discarded")], "completion_b"),
    ]
    records = []
    for number, ((prompt, good, bad), (responses, suggestion)) in enumerate(
        zip(PAIRS, answers, strict=True), 1
    ):
        a, b = (bad, good) if number == 2 else (good, bad)
        records.append(
            rg.Record(
                id=f"hub-{number}",
                fields={"prompt": prompt, "completion_a": a, "completion_b": b},
                responses=[
                    rg.Response("preference", v, user_id=u, status=st) for u, v, st in responses
                ],
                suggestions=[rg.Suggestion("preference", suggestion, score=0.6, agent="rm")],
            )
        )
    hub = OUT / "argilla_hub"
    shutil.rmtree(hub, ignore_errors=True)
    (hub / "data").mkdir(parents=True)
    (hub / ".argilla").mkdir()
    hf = HFDatasetsIO.to_datasets(records, dataset)
    hf.to_parquet(str(hub / "data" / "train-00000-of-00001.parquet"))
    with open(hub / ".argilla" / "dataset.json", "w") as handle:
        json.dump(dataset.api_model().model_dump(mode="json"), handle)
    settings.to_json(path=hub / ".argilla" / "settings.json")


def check(tasks: Path, dataset: Path) -> None:
    """Load prefloop's own exports with the tools' libraries: the Label Studio labeling config
    and its predictions (`prefloop export --format labelstudio`), the Argilla settings and
    records (`prefloop export --format argilla`)."""
    os.environ.setdefault("ARGILLA_API_URL", "http://127.0.0.1:9")
    os.environ.setdefault("ARGILLA_API_KEY", "no-server")
    from argilla._api._client import APIClient

    APIClient._validate_connection = lambda self: None
    import argilla as rg
    from argilla.records._io import JsonIO
    from label_studio_sdk.label_interface import LabelInterface

    config = tasks.with_name(f"{tasks.stem}.label_config.xml").read_text()
    li = LabelInterface(config)
    choices = any(c.tag == "Choices" for c in li.controls)
    for task in json.loads(tasks.read_text()):
        assert all(task["data"].get(o.value_name) is not None for o in li.objects), task
        for prediction in task.get("predictions", []):
            if choices:  # the SDK's validator does not accept Pairwise regions (see above)
                assert li.validate_prediction(prediction), prediction
    settings = rg.Settings.from_json(dataset / ".argilla" / "settings.json")
    records = JsonIO._records_from_json(dataset / "records.json")
    hub = dataset / "data" / "train-00000-of-00001.parquet"
    if hub.exists():  # the Hub form, read as `Dataset.from_hub` reads it (less the server)
        import datasets
        from argilla.records._io import HFDatasetsIO
        from argilla.records._mapping import IngestedRecordMapper

        workspace = rg.Workspace(name="argilla", id=uuid.uuid4())
        target = rg.Dataset(name="check", settings=settings, workspace=workspace)
        rows = datasets.Dataset.from_parquet(str(hub))
        mapping = {c: c for c in rows.column_names if ".suggestion" in c}
        mapper = IngestedRecordMapper(dataset=target, mapping=mapping, user_id=uuid.uuid4())
        mapped = [mapper(row) for row in HFDatasetsIO.to_argilla(hf_dataset=rows, mapper=mapper)]
        assert [r.id for r in mapped] == [r.id for r in records]
    print(
        f"Label Studio: {len(li.controls)} control(s) {[c.name for c in li.controls]}; "
        f"Argilla: fields {[f.name for f in settings.fields]}, questions "
        f"{[q.name for q in settings.questions]}, {len(records)} records"
    )
    assert all(isinstance(r, rg.Record) for r in records)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--check"]:  # --check TASKS.json ARGILLA_FOLDER
        check(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        labelstudio()
        argilla()
        print(f"wrote {OUT}")
