"""Ensemble rewards against a hand computation; generation results into the store."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fakes.ensembles import make_ensemble
from training.ensemble_reward import EnsembleReward
from training.generation_io import export_prompts, ingest_generations, select_prompts
from training.snapshot import prompt_text, transcript_from_prompt


def test_ensemble_length_features_match_hand_computation(tmp_path) -> None:
    folder = make_ensemble(tmp_path / "ens", ["length"], 2, members=3)
    weights = np.load(folder / "ensemble.npz")
    reward = EnsembleReward(folder, conservative_lambda=0.5)
    responses = ["short", "a much longer answer with several words"]
    x = np.array([[math.log1p(len(r)), math.log1p(len(r.split()))] for r in responses])
    members = x @ weights["W"].T + weights["b"]
    expected = members.mean(axis=1) - 0.5 * members.std(axis=1)
    assert reward(["p", "p"], responses) == pytest.approx(expected.tolist(), rel=1e-5)


def test_ensemble_mlp_head_with_standardisation_uses_the_encoder(tmp_path) -> None:
    folder = tmp_path / "mlp"
    folder.mkdir()
    dim = 384 * 2 + 2
    rng = np.random.default_rng(1)
    (folder / "ensemble.json").write_text(
        json.dumps(
            {
                "format": "prefloop-ensemble/1",
                "encoder": "sentence-transformers/all-MiniLM-L6-v2",
                "max_length": 32,
                "normalize": True,
                "features": ["joint", "response", "length"],
                "members": 2,
                "head": "mlp",
                "version": 1,
            }
        )
    )
    np.savez(
        folder / "ensemble.npz",
        W1=rng.normal(size=(2, dim, 4)),
        b1=rng.normal(size=(2, 4)),
        W2=rng.normal(size=(2, 4)),
        b2=rng.normal(size=2),
        mu=np.zeros(dim),
        sigma=np.full(dim, 2.0),
    )
    reward = EnsembleReward(folder, conservative_lambda=1.0)
    members = reward.member_rewards(["hello there"], ["hi, how can I help?"])
    assert members.shape == (1, 2)
    x = reward.features(["hello there"], ["hi, how can I help?"])
    assert x.shape == (1, dim)
    emb = reward.embed(["hi, how can I help?"])
    assert np.linalg.norm(emb[0]) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(x[0, 384:768], emb[0] / 2.0, atol=1e-5)  # (x - 0) / 2


def test_prompt_template_round_trips_to_the_rendered_transcript() -> None:
    single = [{"role": "user", "content": "Why is the sky blue?"}]
    assert prompt_text(single) == "\n\nHuman: Why is the sky blue?\n\nAssistant:"
    assert transcript_from_prompt(prompt_text(single)) == "Why is the sky blue?"
    multi = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "help"},
    ]
    assert (
        transcript_from_prompt(prompt_text(multi))
        == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help"
    )


def test_generations_become_responses_and_unlabelled_pairs(labelled_store, tmp_path) -> None:
    prompts_file = tmp_path / "prompts.jsonl"
    prompts_file.write_text('{"prompt": "Name a colour."}\n{"prompt": "Name a fruit."}\n')
    assert len(select_prompts(labelled_store, str(prompts_file))) == 2
    assert select_prompts(labelled_store, "unlabelled") == []  # every imported prompt is labelled
    count = export_prompts(labelled_store, str(prompts_file), tmp_path / "p.parquet")
    rows = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert count == 2
    sampling = json.dumps({"n": 3, "temperature": 1.0})
    generated = {"prompt_id": [], "messages": [], "response": [], "sampling": []}
    for row, answers in zip(rows, [["red", "blue", "red"], ["apple", "pear", "plum"]], strict=True):
        for answer in answers:
            generated["prompt_id"].append(row["prompt_id"])
            generated["messages"].append(row["messages"])
            generated["response"].append(answer)
            generated["sampling"].append(sampling)
    pq.write_table(pa.table(generated), tmp_path / "g.parquet")
    labels_before = labelled_store.count("labels")
    result = ingest_generations(labelled_store, tmp_path / "g.parquet", who="generate-test")
    assert result["new_pairs"] == 1 + 3  # {red, blue} and 3 pairs of three fruits
    assert result["new_responses"] == 5
    assert labelled_store.count("labels") == labels_before  # new pairs are unlabelled
    metas = labelled_store.query("SELECT meta FROM prompt_responses WHERE origin = 'generate'")
    assert len(metas) == 5 and all(json.loads(m[0])["run_id"] == "generate-test" for m in metas)
    assert labelled_store.scalar("SELECT count(*) FROM pairs WHERE origin = 'generate'") == 4
    assert len(select_prompts(labelled_store, "unlabelled")) == 2
