"""`export --push-to-hub`: everything up to the upload, and the upload's failures.

No network here: the folder that would be uploaded is checked through --save-local (the
card, the parquet files, and `datasets` reading the folder as the Hub would); offline, without
a token and with an unreachable Hub the push stops with a clear error and uploads nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from data.errors import ConfigError
from data.hub_push import HubPush, HubPushError, push_export
from data.store import PreferenceStore
from tests.fakes.pairs import make_pairs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def labelled(store: PreferenceStore) -> PreferenceStore:
    ids = make_pairs(store, 12)
    for i, pair in enumerate(ids):
        store.add_label(pair, source="human", who="ann", verdict="a")
        store.add_label(
            pair, source="judge", who="gpt", verdict="a" if i % 3 else "b", confidence=0.8
        )
    store.add_label(ids[0], source="human", who="bob", verdict="b")
    return store


def test_offline_push_builds_the_folder_and_says_why_nothing_went(
    labelled: PreferenceStore, tmp_path: Path
) -> None:
    import datasets
    from huggingface_hub import DatasetCard

    saved = tmp_path / "hub"
    labelled.close()  # the CLI opens the file itself
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "export",
            "--db",
            labelled.path,
            "--push-to-hub",
            "me/prefs",
            "--test-fraction",
            "0.3",
            "--split-name",
            "train_prefs,test_prefs",
            "--save-local",
            str(saved),
        ],
    )  # HF_HUB_OFFLINE=1 in the test session (tests/conftest.py)
    assert result.exit_code != 0
    assert "HF_HUB_OFFLINE is set" in str(result.exception) and "Nothing was uploaded" in str(
        result.exception
    )
    assert str(saved) in str(result.exception)
    files = sorted(str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "data/test_prefs-00000-of-00001.parquet",
        "data/train_prefs-00000-of-00001.parquet",
    ]
    card = DatasetCard.load(saved / "README.md")
    splits = {c["split"] for c in card.data.to_dict()["configs"][0]["data_files"]}
    assert splits == {"train_prefs", "test_prefs"}
    text = card.text
    assert "gold > adjudication > human > import > judge > model" in text
    assert (
        "| human | 13 | 11 |" in text and "| judge | 12 | 0 |" in text
    )  # ids[0]: split human vote
    assert "Cohen's kappa" in text and "on 11 pairs labelled by both" in text
    loaded = datasets.load_dataset(str(saved))  # reads the card's configs, as the Hub does
    assert set(loaded) == {"train_prefs", "test_prefs"}
    assert loaded["train_prefs"].num_rows + loaded["test_prefs"].num_rows == 11
    assert set(loaded["train_prefs"].column_names) == {"prompt", "chosen", "rejected"}


def test_no_token_and_bad_options_fail_before_any_upload(
    labelled: PreferenceStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(HubPushError, match="no Hugging Face token; set HF_TOKEN"):
        push_export(labelled, HubPush("me/prefs"))
    with pytest.raises(ConfigError, match="NAMESPACE/NAME"):
        push_export(labelled, HubPush("prefs"))
    with pytest.raises(ConfigError, match="TRL formats"):
        push_export(labelled, HubPush("me/prefs"), fmt="pairs")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ConfigError, match="not an empty folder"):
        push_export(labelled, HubPush("me/prefs", save_local=str(tmp_path / "full")))
    with PreferenceStore(tmp_path / "empty.duckdb") as empty:
        make_pairs(empty, 2)
        with pytest.raises(ConfigError, match="nothing to push"):
            push_export(empty, HubPush("me/prefs"))


def test_an_unreachable_hub_is_a_clear_error(labelled: PreferenceStore, tmp_path: Path) -> None:
    """The real upload path (a subprocess with the library's own settings) against a closed
    loopback port: one line, exit 1, nothing half-written locally."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends
    labelled.close()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "HF_TOKEN": "hf_not_a_real_token",
        "HF_HOME": str(tmp_path / "hf"),
    }
    saved = tmp_path / "kept"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "export",
            "--db",
            labelled.path,
            "--push-to-hub",
            "me/prefs",
            "--private",
            "--save-local",
            str(saved),
            "--json",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert (
        line.startswith("Error: pushing to me/prefs failed (") and "no file of it reached" in line
    )
    assert "hf_not_a_real_token" not in done.stderr + done.stdout
    assert sorted(p.name for p in saved.rglob("*.parquet")) == ["train-00000-of-00001.parquet"]
    assert not list(tmp_path.glob(".kept.partial"))
