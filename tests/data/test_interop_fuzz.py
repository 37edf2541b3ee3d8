"""Property, as for the other formats: any Label Studio export or Argilla folder either imports
cleanly or is rejected with a located error (or a settings error), atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.errors import ConfigError, ImportValidationError
from data.importer import ImportOptions, import_sources
from data.shapes import ShapeConfig
from data.store import PreferenceStore
from tests.fakes.annotation_tools import FIXTURES

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["left", "right", "A is better", "tie", "response1", "a" * 32]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["role", "content", "value", "rank", "id", "email"]), inner, max_size=3
        ),
    ),
    max_leaves=8,
)
DATA_KEYS = [
    "prompt",
    "question",
    "answer1",
    "answer2",
    "response_a",
    "response_b",
    "messages",
    "pair_id",
    "left",
    "right",
]
result = st.fixed_dictionaries(
    {},
    optional={
        "from_name": st.sampled_from(["preference", "comparison", "other"]),
        "to_name": st.sampled_from(["preference", "prompt"]),
        "type": st.sampled_from(["pairwise", "choices", "textarea", "rating"]),
        "value": st.one_of(
            values,
            st.fixed_dictionaries(
                {"selected": st.one_of(st.sampled_from(["left", "right", "none"]), values)}
            ),
            st.fixed_dictionaries(
                {
                    "choices": st.lists(
                        st.one_of(st.sampled_from(["Tie", "Left is better", "B"]), values),
                        max_size=2,
                    )
                }
            ),
        ),
    },
)
annotation = st.fixed_dictionaries(
    {},
    optional={
        "completed_by": st.one_of(
            values, st.fixed_dictionaries({"id": st.integers(0, 9), "email": st.text(max_size=8)})
        ),
        "was_cancelled": st.one_of(st.booleans(), values),
        "result": st.one_of(st.lists(st.one_of(result, values), max_size=3), values),
    },
)
task = st.fixed_dictionaries(
    {"data": st.one_of(st.dictionaries(st.sampled_from(DATA_KEYS), values, max_size=5), values)},
    optional={
        "id": st.integers(),
        "annotations": st.one_of(st.lists(st.one_of(annotation, values), max_size=3), values),
        "predictions": values,
    },
)
good_task = st.builds(
    lambda p, a, b, sel, who: {
        "id": 1,
        "data": {"prompt": p, "response_a": a, "response_b": b},
        "annotations": [
            {
                "completed_by": who,
                "result": [
                    {
                        "from_name": "preference",
                        "to_name": "preference",
                        "type": "pairwise",
                        "value": {"selected": sel},
                    }
                ],
            }
        ],
    },
    st.text(min_size=1, max_size=15).filter(str.strip),
    st.text(max_size=15),
    st.text(max_size=15),
    st.sampled_from(["left", "right"]),
    st.integers(1, 3),
)
record = st.fixed_dictionaries(
    {
        "fields": st.one_of(
            st.dictionaries(
                st.sampled_from(["instruction", "response1", "response2", "x"]), values, max_size=4
            ),
            values,
        )
    },
    optional={
        "id": values,
        "responses": st.one_of(
            st.fixed_dictionaries(
                {
                    "ranking": st.one_of(
                        st.lists(
                            st.dictionaries(
                                st.sampled_from(["value", "user_id", "status"]), values, max_size=3
                            ),
                            max_size=3,
                        ),
                        values,
                    )
                }
            ),
            values,
        ),
        "suggestions": values,
    },
)


def _check(store: PreferenceStore, source: Path, where: Path, options: ImportOptions) -> None:
    before = (store.count("pairs"), store.count("labels"), store.count("responses"))
    try:
        import_sources(store, [str(source)], options)
    except ImportValidationError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.source.startswith(str(where)) and problem.message
        assert (store.count("pairs"), store.count("labels"), store.count("responses")) == before
    except ConfigError as exc:
        assert str(exc)
        assert (store.count("pairs"), store.count("labels"), store.count("responses")) == before


def run_property(max_examples: int) -> None:
    options = ImportOptions(shape=ShapeConfig(max_text_chars=25))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        counter = [0]
        with PreferenceStore(directory / "fuzz.duckdb") as store:

            @settings(
                max_examples=max_examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(st.lists(st.one_of(task, good_task), min_size=1, max_size=4), st.booleans())
            def labelstudio(tasks: list, forced: bool) -> None:
                counter[0] += 1
                path = directory / f"ls{counter[0]}.json"
                path.write_text(json.dumps(tasks))
                fmt = "labelstudio" if forced else "auto"
                _check(store, path, path, ImportOptions(format=fmt, shape=options.shape))
                os.unlink(path)

            @settings(
                max_examples=max_examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(st.lists(record, max_size=4), st.one_of(st.none(), values))
            def argilla(records: list, broken_settings: object) -> None:
                counter[0] += 1
                folder = directory / f"ag{counter[0]}"
                shutil.copytree(FIXTURES / "argilla_disk", folder)
                (folder / "records.json").write_text(json.dumps(records))
                if broken_settings is not None:
                    (folder / ".argilla" / "settings.json").write_text(json.dumps(broken_settings))
                _check(store, folder, folder, options)
                shutil.rmtree(folder)

            labelstudio()
            argilla()
        assert counter[0] >= 2 * max_examples


def test_tool_imports_never_traceback_and_are_atomic() -> None:
    run_property(120)


@pytest.mark.slow
def test_tool_import_fuzz_thousand_files() -> None:
    run_property(1000)
