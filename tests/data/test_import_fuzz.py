"""Property: any input either imports cleanly or is rejected with a located error, atomically."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.errors import ImportValidationError
from data.importer import ImportOptions, import_sources
from data.shapes import ShapeConfig
from data.store import PreferenceStore

FIELDS = [
    "prompt",
    "chosen",
    "rejected",
    "response_a",
    "response_b",
    "responses",
    "label",
    "scores",
    "confidence",
    "role",
    "content",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["a", "b", "tie", "\n\nHuman: hi\n\nAssistant: yo"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4),
    ),
    max_leaves=12,
)
rows = st.dictionaries(st.sampled_from(FIELDS), values, max_size=6)
good_row = st.builds(
    lambda p, c, r: {"prompt": p, "chosen": c, "rejected": r},
    st.text(min_size=1, max_size=20).filter(str.strip),
    st.text(max_size=20),
    st.text(max_size=20),
)


def render(kind: str, items: list, noise: bytes) -> bytes:
    if kind == "jsonl":
        return b"".join(json.dumps(i).encode() + b"\n" for i in items) + noise
    if kind == "json":
        return json.dumps(items).encode() + noise
    header = ",".join(FIELDS[:3]).encode() + b"\n"
    body = b"".join(
        ",".join(
            json.dumps(i.get(f, "")) if isinstance(i, dict) else str(i) for f in FIELDS[:3]
        ).encode()
        + b"\n"
        for i in items
    )
    return header + body + noise


@st.composite
def files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["jsonl", "json", "csv"]))
    items = draw(st.lists(st.one_of(rows, good_row, values), max_size=6))
    noise = draw(st.one_of(st.just(b""), st.binary(max_size=12)))
    data = render(kind, items, noise)
    if draw(st.booleans()):
        return kind + ".gz", gzip.compress(data)
    return kind, data


def check_file(
    store: PreferenceStore, directory: Path, name: str, data: bytes, counter: list[int]
) -> None:
    counter[0] += 1
    path = directory / f"f{counter[0]}.{name}"
    path.write_bytes(data)
    before = (store.count("pairs"), store.count("labels"), store.count("responses"))
    try:
        import_sources(store, [str(path)], ImportOptions(shape=ShapeConfig(max_text_chars=25)))
    except ImportValidationError as exc:
        assert exc.problems, "a rejection must say what is wrong"
        for problem in exc.problems:
            assert problem.source == str(path)
            assert problem.message
        assert str(path) in str(exc)
        assert (store.count("pairs"), store.count("labels"), store.count("responses")) == before


def run_property(max_examples: int) -> None:
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
            @given(files())
            def prop(file: tuple[str, bytes]) -> None:
                check_file(store, directory, file[0], file[1], counter)
                for leftover in directory.glob("f*"):
                    os.unlink(leftover)

            prop()
        assert counter[0] >= max_examples


def test_import_never_tracebacks_and_is_atomic() -> None:
    run_property(150)


@pytest.mark.slow
def test_import_fuzz_thousand_files() -> None:
    run_property(1200)
