"""Every api_name through gradio_client against the real app on 127.0.0.1, with roles enforced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.served_app import Served

ADMIN_ENDPOINTS = {
    "/judge_start": ("http://127.0.0.1:9/v1", "m", "", 1, 0, False, 0, 0),
    "/judge_status": (),
    "/train_start": ("dpo",),
    "/generate_start": ("latest", "all", 1, 2, 4),
    "/train_cancel": ("",),
    "/train_status": (),
    "/import_file": (None, "auto", False),
    "/export": ("trl", 0.0),
}


def test_every_action_has_an_api_name(served: Served) -> None:
    names = set(
        served.client("boss").view_api(print_info=False, return_format="dict")["named_endpoints"]
    )
    assert names >= {
        "/next_pair",
        "/whoami",
        "/label_a",
        "/label_b",
        "/label_tie",
        "/label_both_bad",
        "/skip",
        "/undo",
        "/dashboard",
        "/dashboard_open",
        *ADMIN_ENDPOINTS,
    }


def test_unauthenticated_calls_are_rejected(served: Served) -> None:
    import httpx
    from gradio_client import Client

    assert httpx.get(served.url + "config").status_code in (401, 403)
    for api_name in ("next_pair", "label_a", "train_start"):  # the direct (queue-free) route too
        response = httpx.post(f"{served.url}gradio_api/run/{api_name}", json={"data": ["x", ""]})
        assert response.status_code in (401, 403), api_name
    assert served.store.scalar("SELECT count(*) FROM labels WHERE pair_id = 'x'") == 0
    with pytest.raises(Exception):  # noqa: B017 - the client refuses to connect without login
        Client(served.url, verbose=False).predict(api_name="/next_pair")
    with pytest.raises(Exception):  # noqa: B017
        Client(served.url, auth=("ann1", "wrong"), verbose=False)


def test_annotator_cannot_call_admin_endpoints(served: Served) -> None:
    from gradio_client.exceptions import AppError

    client = served.client("ann1")
    before = served.store.count("runs")
    for api_name, args in ADMIN_ENDPOINTS.items():
        with pytest.raises(AppError, match="needs an admin"):
            client.predict(*args, api_name=api_name)
    assert served.store.count("runs") == before  # nothing was started
    assert client.predict(api_name="/whoami")[0] == {"user": "ann1", "role": "annotator"}


def test_label_buttons_skip_and_undo(served: Served) -> None:
    client = served.client("ann2")
    store = served.store
    chat, left, right, pair_id, progress, status, rationale = client.predict(api_name="/next_pair")
    assert pair_id in served.pair_ids and "still want a label" in progress
    assert chat[-1]["role"] == "user"
    labelled = []
    for api_name, verdict in [
        ("/label_a", "a"),
        ("/label_b", "b"),
        ("/label_tie", "tie"),
        ("/label_both_bad", "both_bad"),
    ]:
        out = client.predict(pair_id, f"why {verdict}", api_name=api_name)
        row = store.labels("AND who = 'ann2' AND pair_id = ?", [pair_id])[0]
        expected = {"a": "b", "b": "a"}.get(verdict, verdict) if row["swapped"] else verdict
        assert row["verdict"] == expected and row["rationale"] == f"why {verdict}"
        labelled.append(pair_id)
        assert out[3] != pair_id and out[5].startswith("Saved")
        pair_id = out[3]
    skipped = pair_id
    out = client.predict(skipped, api_name="/skip")
    assert out[3] not in (skipped, *labelled)
    out = client.predict(api_name="/undo")
    assert out[3] == labelled[-1] and "Undone" in out[5]
    assert len(store.labels("AND who = 'ann2'")) == 3


def test_a_label_for_a_pair_leased_to_someone_else_is_refused(served: Served) -> None:
    from gradio_client.exceptions import AppError

    mine = served.client("ann1").predict(api_name="/next_pair")[3]
    with pytest.raises(AppError, match="not the one shown to you") as refused:
        served.client("ann2").predict(mine, "", api_name="/label_a")
    assert mine not in str(refused.value) and "ann1" not in str(refused.value)


def test_admin_endpoints_work_for_admin(served: Served, tmp_path: Path) -> None:
    from gradio_client import handle_file

    client = served.client("boss")
    assert client.predict(api_name="/whoami")[0] == {"user": "boss", "role": "admin"}
    status_md, failures = client.predict(api_name="/judge_status")
    assert "Judge queue" in status_md
    train_md, _plot, _metrics, history = client.predict(api_name="/train_status")
    assert "No runs yet" in train_md or "Latest run" in train_md
    assert "No run is queued" in client.predict("", api_name="/train_cancel")
    agreement, *plots = client.predict(api_name="/dashboard")
    assert "Krippendorff" in agreement and len(plots) == 4

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"prompt": "p", "response_a": "x", "response_b": "x"})
        + "\n"
        + json.dumps({"prompt": "q", "response_a": "1", "response_b": "2", "label": "a"})
        + "\n"
    )
    before = served.store.count("pairs")
    summary, problems = client.predict(
        handle_file(str(bad)), "auto", False, api_name="/import_file"
    )
    assert "Nothing imported" in summary and served.store.count("pairs") == before
    assert problems["data"][0][0] == "bad.jsonl" and "identical" in problems["data"][0][3]
    summary, _ = client.predict(handle_file(str(bad)), "auto", True, api_name="/import_file")
    assert "Imported **1** pairs" in summary and served.store.count("pairs") == before + 1
    report = Path(served.store.path).with_suffix(".rejected.jsonl")  # next to the store
    assert f"`{report}`" in summary and "identical" in report.read_text()
    reference = tmp_path / "reference.jsonl"
    reference.write_text(
        json.dumps({"prompt": "r", "response_a": "one", "response_b": "two", "label": "b"}) + "\n"
    )
    labels_before = served.store.count("labels")
    summary, _ = client.predict(
        handle_file(str(reference)), "auto", False, "as-reference", api_name="/import_file"
    )
    assert "kept as reference only" in summary
    assert served.store.count("labels") == labels_before
    assert served.store.count("reference_labels") == 1

    summary, files = client.predict("trl", 0.0, api_name="/export")
    assert "Exported" in summary
    rows = [json.loads(line) for line in Path(files[0]).read_text().splitlines()]
    assert rows and {"prompt", "chosen", "rejected"} <= set(rows[0])


def test_judge_start_reports_configuration_problems(served: Served) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="model"):
        served.client("boss").predict("", " ", "", 4, 0, False, 0, 0, api_name="/judge_start")
