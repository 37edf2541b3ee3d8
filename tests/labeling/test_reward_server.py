"""`prefloop serve-reward` over HTTP in OpenRLHF's remote reward-model protocol, with real
texts and a real encoder; and `prefloop export --for openrlhf|verl`."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from app.cli import cli
from data.store import PreferenceStore
from labeling.reward_service import EnsembleScorer, RewardServer, RewardServerConfig
from tests.fakes.ensembles import make_ensemble
from tests.fakes.judging import make_pairs
from training.ensemble_reward import EnsembleReward

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["How do I boil an egg?", "Name a prime number."]
RESPONSES = ["Put it in boiling water for nine minutes.", "Seven is prime."]


def post(url: str, body: object) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_reward_server_speaks_openrlhf_remote_rm_protocol(tmp_path: Path) -> None:
    folder = make_ensemble(tmp_path / "ens", ["joint", "length"], 384 + 2, members=4, seed=3)
    scorer = EnsembleScorer(folder, conservative_lambda=0.5)
    with RewardServer(scorer, RewardServerConfig(port=0, conservative_lambda=0.5)) as server:
        url = server.url
        # OpenRLHF sends each query as prompt + response, and the prompts alone
        queries = [p + " " + r for p, r in zip(PROMPTS, RESPONSES, strict=True)]
        status, out = post(url, {"query": queries, "prompts": PROMPTS, "labels": ["", ""]})
        assert status == 200, out
        # the trainer-side implementation (training/ensemble_reward.py) agrees
        expected = EnsembleReward(folder, conservative_lambda=0.5)(PROMPTS, RESPONSES)
        assert out["rewards"] == pytest.approx(expected, abs=1e-4)
        assert out["scores"] == out["rewards"]
        assert len(out["extra_logs"]["ensemble_std"]) == 2
        assert min(out["extra_logs"]["ensemble_std"]) > 0  # four members disagree a little
        # the same text as a response to another prompt gets another reward
        _, other = post(url, {"query": [RESPONSES[0]], "prompts": ["Name a prime number."]})
        assert other["rewards"][0] != pytest.approx(out["rewards"][0], abs=1e-6)
        status, bad = post(url, {"query": ["a", "b"], "prompts": ["only one"]})
        assert status == 400 and "one prompt per query" in bad["error"]
        status, bad = post(url, {"queries": []})
        assert status == 400 and '"query"' in bad["error"]
        with urllib.request.urlopen(url.replace("/get_reward", "/health"), timeout=10) as r:
            health = json.loads(r.read())
        assert health["members"] == 4 and health["lambda"] == 0.5


@pytest.mark.slow
def test_prefloop_serve_reward_serves_the_stores_latest_ensemble(tmp_path: Path) -> None:
    folder = make_ensemble(tmp_path / "ens", ["length"], 2, members=3)
    db = tmp_path / "s.duckdb"
    with PreferenceStore(db) as store:
        make_pairs(store, 1)
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve-reward", "--db", str(db), "--ensemble", str(folder),
         "--port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.endswith("/get_reward"), process.stderr.read()  # type: ignore[union-attr]
        status, out = post(url, {"query": ["p short", "p a longer answer"], "prompts": ["p", "p"]})
        assert status == 200
        assert out["rewards"] == pytest.approx(
            EnsembleReward(folder)(["p", "p"], ["short", "a longer answer"]), abs=1e-5
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
    no_ensemble = CliRunner().invoke(cli, ["serve-reward", "--db", str(db)])
    assert no_ensemble.exit_code != 0 and "prefloop score" in str(no_ensemble.exception)


def test_export_for_openrlhf_and_verl_writes_their_prompt_datasets(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with PreferenceStore(db) as store:
        make_pairs(store, 3)
    runner = CliRunner()
    out = runner.invoke(cli, ["export", "--db", str(db), "--for", "openrlhf", "--out",
                              str(tmp_path / "p.jsonl"), "--json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads(out.output.strip().splitlines()[-1])["prompts"] == 3
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert rows[0]["input"][0]["role"] == "user" and rows[0]["prompt_text"].startswith("question")
    out = runner.invoke(cli, ["export", "--db", str(db), "--for", "verl", "--out",
                              str(tmp_path / "p.parquet"), "--limit", "2"])  # fmt: skip
    assert out.exit_code == 0, out.output
    table = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert len(table) == 2 and table[0]["data_source"] == "prefloop"
    assert table[0]["prompt"][0]["content"].startswith("question")
    assert table[0]["reward_model"] == {"style": "model", "ground_truth": ""}
    assert table[1]["extra_info"]["index"] == 1
    bad = runner.invoke(cli, ["export", "--db", str(db), "--for", "verl", "--out",
                              str(tmp_path / "p.jsonl")])  # fmt: skip
    assert bad.exit_code != 0 and ".parquet" in str(bad.exception)
