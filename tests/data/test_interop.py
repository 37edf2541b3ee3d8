"""Label Studio and Argilla: the tools' own files import as human labels; prefloop's exports
go out with pre-annotations and come back onto the same pair ids.

The fixtures in tests/fixtures/interop were written with label-studio-sdk 2.1.2 and argilla
2.8.0 (scripts/interop_fixtures.py); neither library is a prefloop dependency.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.errors import ConfigError, ImportValidationError
from data.importer import ImportOptions, import_sources
from data.queue import Assignment, assign
from data.store import PreferenceStore
from data.tool_export import export_for_tool, judge_suggestions, pairs_for_tool
from data.tool_records import ToolConfig
from tests.fakes.annotation_tools import FIXTURES, annotate_argilla, annotate_labelstudio
from tests.fakes.pairs import make_pairs

LS = FIXTURES / "labelstudio"


def human_labels(store: PreferenceStore) -> list[tuple[str, str, str]]:
    """(prompt, who, chosen response) of every active human label."""
    rows = store.query(
        """
        SELECT pr.text, l.who, CASE l.verdict WHEN 'a' THEN ra.text WHEN 'b' THEN rb.text
               ELSE l.verdict END
        FROM active_labels l JOIN pairs p USING (pair_id) JOIN prompts pr USING (prompt_id)
        JOIN responses ra ON ra.response_id = p.response_a_id
        JOIN responses rb ON rb.response_id = p.response_b_id
        WHERE l.source = 'human' ORDER BY 1, 2
        """
    )
    return [tuple(r) for r in rows]


def test_label_studio_pairwise_export_imports_as_human_labels(store: PreferenceStore) -> None:
    report = import_sources(store, [str(LS / "pairwise_export.json")], ImportOptions())
    assert (report.imported_pairs, report.labels, report.invalid) == (4, 4, 0)
    assert human_labels(store) == [
        ("Name a prime number above 10.", "alice@example.com", "11 is prime."),
        ("Name a prime number above 10.", "labelstudio:2", "12 is prime."),
        ("What is the capital of France?", "alice@example.com", "Paris."),
        ("What is the capital of France?", "labelstudio:2", "Paris."),
    ]  # the cancelled annotation and the unannotated task give no label; predictions are ignored
    assert store.count("labels") == 4
    again = import_sources(store, [str(LS / "pairwise_export.json")], ImportOptions())
    assert (again.imported_pairs, again.labels, again.duplicate_labels) == (0, 0, 4)


def test_label_config_names_the_fields_and_choices_give_ties(
    store: PreferenceStore, tmp_path: Path
) -> None:
    options = ImportOptions(tool=ToolConfig(label_config=str(LS / "pairwise_config.xml")))
    assert import_sources(store, [str(LS / "pairwise_export.json")], options).labels == 4
    with PreferenceStore(tmp_path / "choices.duckdb") as choices:
        options = ImportOptions(tool=ToolConfig(label_config=str(LS / "choices_config.xml")))
        report = import_sources(choices, [str(LS / "choices_export.json")], options)
        assert (report.imported_pairs, report.labels) == (4, 4)
        assert human_labels(choices) == [
            ("How many legs has a spider?", "alice@example.com", "both_bad"),
            ("Name a prime number above 10.", "alice@example.com", "12 is prime."),
            ("Say hello in Spanish.", "alice@example.com", "tie"),
            ("What is the capital of France?", "alice@example.com", "Paris."),
        ]  # "Right is better": the right text of the task, whichever id it has


def test_label_studio_problems_are_located(store: PreferenceStore, tmp_path: Path) -> None:
    tasks = json.loads((LS / "choices_export.json").read_text())
    tasks[2]["annotations"][0]["result"][0]["value"]["choices"] = ["Left wins"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tasks))
    with pytest.raises(ImportValidationError) as caught:
        import_sources(store, [str(bad)], ImportOptions())
    (problem,) = caught.value.problems
    assert (problem.source, problem.line, problem.unit) == (str(bad), 3, "row")
    assert problem.field == "annotations[0].result[0].value.choices[0]"
    assert "--choice 'Left wins=a'" in problem.message
    assert store.count("pairs") == 0  # atomic
    del tasks[3]["annotations"][0]["completed_by"]  # an annotation that names nobody
    bad.write_text(json.dumps(tasks))
    mapped = ImportOptions(tool=ToolConfig(choices=(("Left wins", "a"),)))
    assert import_sources(store, [str(bad)], mapped).labels == 4
    assert store.scalar("SELECT count(*) FROM active_labels WHERE who = 'labelstudio'") == 1
    tasks[0]["data"].pop("left")
    bad.write_text(json.dumps(tasks))
    with pytest.raises(ImportValidationError, match="no two responses"):
        import_sources(store, [str(bad)], ImportOptions(format="labelstudio"))
    with pytest.raises(ConfigError, match="exactly one Pairwise or Choices"):
        options = ImportOptions(
            tool=ToolConfig(label_config=str(LS / "choices_config.xml"), question="x")
        )
        import_sources(store, [str(LS / "choices_export.json")], options)


def test_argilla_to_disk_and_hub_folders(store: PreferenceStore) -> None:
    disk = import_sources(store, [str(FIXTURES / "argilla_disk")], ImportOptions())
    # to_disk writes no status: all five responses count; the unanswered record is a pair alone
    assert (disk.imported_pairs, disk.labels) == (4, 5)
    alice, bob = (
        "argilla:00000000-0000-4000-8000-00000000a11c",
        "argilla:00000000-0000-4000-8000-000000000b0b",
    )
    assert human_labels(store) == sorted(
        [
            ("Name a prime number above 10.", alice, "11 is prime."),
            ("Name a prime number above 10.", bob, "12 is prime."),
            ("Say hello in Spanish.", bob, "Hola."),
            ("What is the capital of France?", alice, "Paris."),
            ("What is the capital of France?", bob, "Paris."),
        ]
    )  # bob's second record ranks the wrong answer first
    hub = import_sources(store, [str(FIXTURES / "argilla_hub")], ImportOptions(format="argilla"))
    # the same four pairs; the draft and the discarded response are left out
    assert (hub.imported_pairs, hub.duplicates, hub.labels, hub.duplicate_labels) == (0, 4, 1, 3)
    assert (
        store.scalar("SELECT count(*) FROM active_labels WHERE verdict = 'tie' AND who = ?", [bob])
        == 1
    )


def test_argilla_problems(store: PreferenceStore, tmp_path: Path) -> None:
    with pytest.raises(ImportValidationError, match="Argilla record: import the dataset folder"):
        import_sources(store, [str(FIXTURES / "argilla_disk" / "records.json")], ImportOptions())
    with pytest.raises(ConfigError, match="--format argilla reads an Argilla dataset folder"):
        import_sources(store, [str(LS / "pairwise_export.json")], ImportOptions(format="argilla"))
    folder = tmp_path / "ds"
    annotate_argilla(FIXTURES / "argilla_disk", folder, {})
    records = json.loads((folder / "records.json").read_text())
    records[1]["responses"] = {"ranking": [{"value": ["response1", "nope"], "user_id": "u"}]}
    (folder / "records.json").write_text(json.dumps(records))
    with pytest.raises(ImportValidationError) as caught:
        import_sources(store, [str(folder)], ImportOptions())
    (problem,) = caught.value.problems
    assert (problem.source, problem.line, problem.field) == (
        str(folder / "records.json"),
        2,
        "responses.ranking[0].value",
    )
    with pytest.raises(ConfigError, match="question named 'none'"):
        import_sources(store, [str(folder)], ImportOptions(tool=ToolConfig(question="none")))


@pytest.fixture
def routed(store: PreferenceStore) -> tuple[PreferenceStore, list[str]]:
    """Six pairs; four routed to humans (two of them wanting two labels), one judged."""
    ids = make_pairs(store, 6)
    assign(
        store,
        [
            Assignment(p, "human", priority=10 - i, needed_labels=2 if i < 2 else 1)
            for i, p in enumerate(ids[:4])
        ]
        + [Assignment(ids[4], "judge")],
    )
    store.add_label(ids[0], source="judge", who="gpt-judge", verdict="b", confidence=0.9)
    return store, ids


@pytest.mark.parametrize("template", ["pairwise", "choices"])
def test_label_studio_round_trip_closes_the_human_queue(
    routed: tuple[PreferenceStore, list[str]], tmp_path: Path, template: str
) -> None:
    store, ids = routed
    pairs = pairs_for_tool(store, "human-queue")
    assert [p.pair_id for p in pairs] == ids[:4]  # by priority
    hints = judge_suggestions(store, ids)
    files = export_for_tool(tmp_path / "tasks.json", "labelstudio", pairs, hints, template=template)
    tasks = json.loads(Path(files[0]).read_text())
    assert (
        "Pairwise" in Path(files[1]).read_text()
        if template == "pairwise"
        else "Choices" in Path(files[1]).read_text()
    )
    (prediction,) = tasks[0]["predictions"]
    assert prediction["model_version"] == "judge:gpt-judge" and prediction["score"] == 0.9
    value = prediction["result"][0]["value"]
    assert value == (
        {"selected": "right"} if template == "pairwise" else {"choices": ["B is better"]}
    )
    assert all("predictions" not in t for t in tasks[1:])

    alice = {"id": 3, "email": "alice@example.com", "first_name": "", "last_name": ""}
    votes = {
        ids[0]: [(alice, "a"), (4, "b")],
        ids[1]: [(alice, "b")],
        ids[2]: [(4, "a")],
        ids[3]: [],
    }
    back = annotate_labelstudio(Path(files[0]), tmp_path / "export.json", votes, template)
    report = import_sources(store, [str(back)], ImportOptions())
    assert (report.imported_pairs, report.duplicates, report.labels) == (0, 4, 4)
    labels = store.query(
        "SELECT pair_id, who, verdict FROM active_labels WHERE source = 'human' ORDER BY 1, 2"
    )
    assert sorted(labels) == sorted(
        [
            (ids[0], "alice@example.com", "a"),
            (ids[0], "labelstudio:4", "b"),
            (ids[1], "alice@example.com", "b"),
            (ids[2], "labelstudio:4", "a"),
        ]
    )
    # ids[1] wanted two labels and has one; ids[3] none; ids[0] and ids[2] are done
    assert [p.pair_id for p in pairs_for_tool(store, "human-queue")] == [ids[1], ids[3]]


def test_argilla_round_trip_closes_the_human_queue(
    routed: tuple[PreferenceStore, list[str]], tmp_path: Path
) -> None:
    store, ids = routed
    pairs = pairs_for_tool(store, "human-queue", limit=3)
    assert len(pairs) == 3
    (folder,) = export_for_tool(tmp_path / "ds", "argilla", pairs, judge_suggestions(store, ids))
    settings = json.loads((Path(folder) / ".argilla" / "settings.json").read_text())
    assert [f["name"] for f in settings["fields"]] == ["prompt", "response_a", "response_b"]
    records = json.loads((Path(folder) / "records.json").read_text())
    assert [r["id"] for r in records] == ids[:3]
    assert records[0]["suggestions"] == {
        "preference": {"value": "b", "score": 0.9, "agent": "judge:gpt-judge"}
    }
    assert records[0]["fields"]["prompt"] == [{"role": "user", "content": "q0"}]
    with pytest.raises(ConfigError, match="not an empty folder"):
        export_for_tool(tmp_path / "ds", "argilla", pairs, {})

    votes = {
        ids[0]: [("u-1", "a"), ("u-2", "a")],
        ids[1]: [("u-1", "tie")],
        ids[2]: [("u-2", "both_bad")],
    }
    back = annotate_argilla(Path(folder), tmp_path / "answered", votes, status=True)
    report = import_sources(store, [str(back)], ImportOptions())
    assert (report.imported_pairs, report.labels) == (0, 4)
    assert store.query(
        "SELECT who, verdict FROM active_labels WHERE source = 'human' AND pair_id = ? ORDER BY 1",
        [ids[0]],
    ) == [("argilla:u-1", "a"), ("argilla:u-2", "a")]
    assert [p.pair_id for p in pairs_for_tool(store, "human-queue")] == [ids[1], ids[3]]

    records[0]["fields"]["response_a"] = "edited in Argilla"
    (Path(folder) / "records.json").write_text(json.dumps(records))
    with pytest.raises(ImportValidationError, match="were the texts edited in the tool"):
        import_sources(store, [folder], ImportOptions())


def test_round_trip_through_a_fresh_store_loses_nothing(
    routed: tuple[PreferenceStore, list[str]], tmp_path: Path
) -> None:
    """Like the TRL round trip: every pair's prompt and texts come back with the same ids."""
    store, ids = routed
    pairs = pairs_for_tool(store, "all")
    for fmt, out in (("labelstudio", "all.json"), ("argilla", "all_ds"), ("argilla", "hub_ds")):
        files = export_for_tool(tmp_path / out, fmt, pairs, {})
        if out == "hub_ds":  # the Hub form alone: the parquet rows, as `to_hub` lays them out
            (tmp_path / out / "records.json").unlink()
            assert (tmp_path / out / "data" / "train-00000-of-00001.parquet").is_file()
        with PreferenceStore(tmp_path / f"{out}.duckdb") as copy:
            import_sources(copy, files[:1], ImportOptions())
            for sql in (
                "SELECT pair_id, response_a_id, response_b_id FROM pairs ORDER BY 1",
                "SELECT prompt_id, messages FROM prompts ORDER BY 1",
            ):
                assert copy.query(sql) == store.query(sql)


def test_gold_and_reference_imports_of_tool_answers(store: PreferenceStore) -> None:
    src = [str(LS / "choices_export.json")]
    report = import_sources(store, src, ImportOptions(labels="as-reference"))
    assert (report.labels, report.reference_labels) == (0, 4)
    assert store.query("SELECT DISTINCT who FROM reference_labels") == [("alice@example.com",)]
    with PreferenceStore(Path(store.path).with_name("gold.duckdb")) as gold:
        assert import_sources(gold, src, ImportOptions(gold=True)).gold_answers == 4
        assert gold.count("labels") == 0
