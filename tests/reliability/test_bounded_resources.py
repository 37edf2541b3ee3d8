"""Resources stay bounded (issue 14, class 5): uploads, rationales, long lines and turns.

* Uploads go through the real served app (`/gradio_api/upload`, Gradio's own route):
  an annotator is refused, an admin is served within a quota, and the file is gone
  once its import has finished. A previous server's uploads are swept at start.
* A 100 MB JSONL line is refused by its byte length, in a subprocess whose peak RSS
  is measured against the same import without it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.ui import upload_guard
from app.ui.upload_guard import UploadLimits
from data.errors import StoreError
from data.store import MAX_RATIONALE_CHARS, PreferenceStore
from tests.fakes.served_app import PASSWORDS, Served, serve_store, stop

ROW = b'{"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}\n'


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = serve_store(tmp_path_factory.mktemp("bounded"), n=5)
    yield running
    stop(running)


@contextlib.contextmanager
def login(served: Served, user: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        response = client.post("/login", data={"username": user, "password": PASSWORDS[user]})
        assert response.status_code == 200, response.text
        yield client


def upload(client: httpx.Client, name: str, data: bytes) -> httpx.Response:
    return client.post("/gradio_api/upload", files={"files": (name, data)})


def test_an_annotator_cannot_upload(app: Served) -> None:
    with login(app, "ann1") as client:
        response = upload(client, "rows.jsonl", ROW)
    assert response.status_code == 403
    assert "only admins may upload" in response.json()["detail"]


def test_no_login_no_upload(app: Served) -> None:
    response = httpx.post(app.url + "gradio_api/upload", files={"files": ("x.jsonl", ROW)})
    assert response.status_code == 401


def test_an_admin_uploads_within_the_quota(app: Served) -> None:
    guard = upload_guard.guard_for(app.ctx)
    assert guard is not None
    guard.limits = UploadLimits(quota_bytes_per_hour=3_000)
    guard.recent.clear()
    try:
        with login(app, "boss") as client:
            first = upload(client, "a.jsonl", ROW * 10)  # ~700 bytes of file + form
            assert first.status_code == 200, first.text
            (path,) = first.json()
            assert Path(path).is_file()
            assert str(Path(path).resolve()) in guard.uploads
            second = upload(client, "b.jsonl", ROW * 40)  # ~2.5 kB: over the hour's 3 kB
            assert second.status_code == 429
            assert "quota" in second.json()["detail"]
            assert guard.release(path) and not Path(path).exists()
    finally:
        guard.limits = UploadLimits()
        guard.recent.clear()


def test_an_upload_over_the_request_cap_is_refused_unread(app: Served) -> None:
    guard = upload_guard.guard_for(app.ctx)
    assert guard is not None
    guard.limits = UploadLimits(max_request_bytes=1_000)
    try:
        with login(app, "boss") as client:
            response = upload(client, "big.jsonl", ROW * 100)
        assert response.status_code == 413
    finally:
        guard.limits = UploadLimits()


def test_the_uploaded_file_is_deleted_after_its_import(app: Served, tmp_path: Path) -> None:
    from gradio_client import handle_file

    guard = upload_guard.guard_for(app.ctx)
    assert guard is not None
    recorded: list[str] = []
    original = guard.record
    guard.record = lambda user, paths, n: (recorded.extend(paths), original(user, paths, n))  # type: ignore[method-assign]
    try:
        good = tmp_path / "good.jsonl"
        good.write_bytes(ROW)
        bad = tmp_path / "bad.jsonl"
        bad.write_bytes(b'{"prompt": "p", "chosen": 1, "rejected": "x"}\n')
        client = app.client("boss")
        summary, _ = client.predict(handle_file(str(good)), "auto", False, api_name="/import_file")
        assert "Imported **1** pairs" in summary
        summary, _ = client.predict(handle_file(str(bad)), "auto", False, api_name="/import_file")
        assert "Nothing imported" in summary
        with pytest.raises(httpx.HTTPStatusError, match="403"):  # its upload is refused
            app.client("ann1").predict(
                handle_file(str(good)), "auto", False, api_name="/import_file"
            )
    finally:
        guard.record = original  # type: ignore[method-assign]
    assert len(recorded) == 2  # the annotator's upload never got in
    assert not any(Path(p).exists() for p in recorded)
    assert not guard.uploads


def test_a_previous_servers_uploads_are_swept_at_start(tmp_path: Path) -> None:
    leftover = tmp_path / "gradio" / "abc123" / "old.jsonl"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(ROW)
    ledger = tmp_path / "store.uploads.json"
    ledger.write_text(
        json.dumps({"files": {str(leftover): {"user": "boss", "bytes": 60, "at": 0}}})
    )
    served = serve_store(tmp_path, n=2)
    try:
        assert not leftover.exists() and not leftover.parent.exists()
        assert json.loads(ledger.read_text())["files"] == {}
    finally:
        stop(served)


def test_an_upload_left_unimported_expires(app: Served) -> None:
    guard = upload_guard.guard_for(app.ctx)
    assert guard is not None
    with login(app, "boss") as client:
        (path,) = upload(client, "idle.jsonl", ROW).json()
    assert Path(path).exists()
    assert guard.expire(now=guard.uploads[str(Path(path).resolve())].at + 3601) == 1
    assert not Path(path).exists()


def test_a_huge_rationale_is_refused(app: Served) -> None:
    with login(app, "ann1") as client:  # any other request body: capped at 1 MiB
        response = client.post(
            "/gradio_api/queue/join",
            json={"data": ["x", "y" * (20 * 2**20)], "fn_index": 0, "session_hash": "s"},
        )
    assert response.status_code == 413
    with PreferenceStore(Path(app.store.path).parent / "direct.duckdb") as store:
        from data.ingest import ingest
        from data.shapes import PairRecord

        (pair,) = ingest(
            store, [PairRecord([{"role": "user", "content": "q"}], "a", "b")], origin="t"
        ).pair_ids
        with pytest.raises(StoreError, match="rationale is 4001 characters"):
            store.add_label(pair, source="human", who="ann", verdict="a", rationale="r" * 4001)
        store.add_label(
            pair, source="human", who="ann", verdict="a", rationale="r" * MAX_RATIONALE_CHARS
        )
        assert store.count("labels") == 1
    # the annotate path (the click batch) refuses it too, and stores nothing
    from gradio_client.exceptions import AppError

    annotator = app.client("ann2")
    shown = annotator.predict(api_name="/next_pair")[3]
    before = app.store.count("labels")
    with pytest.raises(AppError, match="rationale is 4001 characters"):
        annotator.predict(shown, "r" * 4001, api_name="/label_a")
    assert app.store.count("labels") == before


PEAK = textwrap.dedent(
    """
    import resource, sys
    from app.cli import main
    try:
        main(["import", sys.argv[1], "--db", sys.argv[2], "--skip-invalid", "--json",
              "--report", sys.argv[3]])
    except SystemExit:
        pass
    print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """
)


def peak_mib(source: Path, tmp: Path) -> tuple[int, list[dict[str, object]]]:
    report = tmp / f"{source.stem}.rejected.jsonl"
    db = tmp / f"{source.stem}.duckdb"
    done = subprocess.run(
        [sys.executable, "-c", PEAK, str(source), str(db), str(report)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    peak = int(done.stdout.rsplit("PEAK", 1)[1])
    problems = (
        [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    )
    return peak, problems


def test_a_100_mb_line_of_turns_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    small = tmp_path / "small.jsonl"
    small.write_bytes(ROW)
    baseline, _ = peak_mib(small, tmp_path)
    big = tmp_path / "big.jsonl"
    turn = b'{"role": "user", "content": "x"},'
    with big.open("wb") as handle:
        handle.write(ROW)
        handle.write(b'{"chosen": "a", "rejected": "b", "prompt": [')
        for _ in range(100):  # 100 x 1 MB of turns: one 100 MB line
            handle.write(turn * (2**20 // len(turn)))
        handle.write(b'{"role": "user", "content": "x"}]}\n')
        # just under the 8 MiB line cap: parsed, then refused by the turn cap
        handle.write(b'{"chosen": "a", "rejected": "b", "prompt": [')
        handle.write(turn * (7 * 2**20 // len(turn)))
        handle.write(b'{"role": "user", "content": "x"}]}\n')
    assert big.stat().st_size > 100 * 10**6
    peak, problems = peak_mib(big, tmp_path)
    assert [p["line"] for p in problems] == [2, 3]
    assert "line limit" in str(problems[0]["message"])
    assert "turn limit" in str(problems[1]["message"]) and problems[1]["field"] == "prompt"
    # the 100 MB line is never held; the 7 MiB one is parsed once (about 220k small dicts)
    assert peak - baseline < 400, (peak, baseline)
