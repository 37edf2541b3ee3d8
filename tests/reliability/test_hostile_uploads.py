"""Hostile uploads through the app's Data tab API get a clear message and change nothing."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from tests.fakes.served_app import Served, served  # noqa: F401 - module-scoped app fixture


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("garbage.jsonl", os.urandom(4096), "Nothing imported"),
        ("bomb.jsonl.gz", gzip.compress(b"{" * 3_000_000), "Nothing imported"),
        ("fake.parquet", b"PAR1 not really parquet PAR1", "Parquet"),
        ("notgzip.csv.gz", b"plain text pretending", "cannot read file"),
        (
            "evil<script>alert(1)</script>.jsonl",
            b'{"prompt": "p", "chosen": 1, "rejected": "x"}\n',
            "Nothing imported",
        ),
        ("shape.json", b'{"nested": {"deep": [1, 2, 3]}}', "Nothing imported"),
        ("program.exe", b"MZ\x90\x00", "unknown file type"),
    ],
)
def test_hostile_upload_is_refused_clearly(
    served: Served,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    name: str,
    content: bytes,  # noqa: F811
    expected: str,
) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    path = tmp_path / name.replace("/", "_")
    path.write_bytes(content)
    before = {t: served.store.count(t) for t in ("pairs", "labels", "responses")}
    client = served.client("boss")
    try:
        summary, problems = client.predict(
            handle_file(str(path)), "auto", False, api_name="/import_file"
        )
        message = summary + " " + " ".join(str(cell) for row in problems["data"] for cell in row)
    except AppError as exc:  # a gr.Error: shown to the user as a message, not a traceback
        message = str(exc)
    assert expected in message
    assert "Traceback" not in message
    assert {t: served.store.count(t) for t in ("pairs", "labels", "responses")} == before
