from __future__ import annotations

import numpy as np
import pytest

from data.errors import ConfigError
from data.store import PreferenceStore
from labeling.encoder import Encoder, EncoderConfig, cache_key, embed_texts
from labeling.features import response_features

CONFIG = EncoderConfig(max_length=64, batch_size=8, progress=False)
TEXTS = [f"Response number {i}: " + "the quick brown fox " * (i % 5 + 1) for i in range(20)]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(CONFIG)


def test_second_run_hits_the_cache_without_a_forward_pass(store, encoder):
    before = encoder.forward_calls
    first, encoded = embed_texts(store, TEXTS, config=CONFIG, encoder=encoder)
    assert encoded == 20 and first.shape == (20, 384)
    assert encoder.forward_calls - before == 3  # 20 texts in batches of 8
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert store.count("embeddings") == 20

    calls = encoder.forward_calls
    again, encoded = embed_texts(store, TEXTS, config=CONFIG, encoder=encoder)
    assert encoded == 0 and encoder.forward_calls == calls  # no forward at all
    np.testing.assert_array_equal(again, first)

    # only the new text is encoded when the list grows; duplicates are encoded once
    seen = encoder.texts_encoded
    _, encoded = embed_texts(
        store, TEXTS + ["something new", "something new"], config=CONFIG, encoder=encoder
    )
    assert encoded == 1 and encoder.texts_encoded - seen == 1
    assert store.count("embeddings") == 21


def test_cache_survives_reopening_and_never_loads_the_model(store_path, encoder):
    with PreferenceStore(store_path) as store:
        embed_texts(store, TEXTS[:4], config=CONFIG, encoder=encoder)
    with PreferenceStore(store_path) as store:

        def no_model():
            raise AssertionError("the encoder must not be loaded when every text is cached")

        vectors, encoded = embed_texts(store, TEXTS[:4], config=CONFIG, encoder=no_model)
        assert encoded == 0 and vectors.shape == (4, 384)


def test_batching_by_length_does_not_change_vectors(encoder):
    one_by_one = np.stack([encoder.encode([t])[0] for t in TEXTS[:5]])
    batched = encoder.encode(TEXTS[:5])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_joint_tail_keeps_the_end_of_a_long_text(store, encoder):
    prompt = "A very long conversation. " * 100
    x, _ = response_features(
        store,
        [prompt, prompt],
        ["Paris is the capital.", "I like turtles."],
        ["joint", "joint_tail"],
        config=CONFIG,
        encoder=encoder,
    )
    joint, tail = x[:, :384], x[:, 384:]
    # right truncation cuts both responses off: identical joint embeddings; the tail differs
    np.testing.assert_allclose(joint[0], joint[1], atol=1e-6)
    assert np.linalg.norm(tail[0] - tail[1]) > 0.1
    keys = {r[0] for r in store.query("SELECT DISTINCT encoder FROM embeddings")}
    assert keys == {
        cache_key(CONFIG),
        cache_key(EncoderConfig(**{**CONFIG.__dict__, "truncation_side": "left"})),
    }


def test_unknown_encoder_names_the_fix():
    with pytest.raises(ConfigError, match="local folder"):
        Encoder(EncoderConfig(name="/nonexistent/encoder-folder"))


def test_last_token_pooling_takes_the_last_real_token_of_each_row() -> None:
    import torch

    from data.models import SMOLLM2, pooling
    from labeling.encoder import pool

    assert pooling(SMOLLM2) == "last" and pooling("all-MiniLM-L6-v2") == "mean"
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])  # the second row is right-padded
    last = pool(hidden, mask, "last")
    torch.testing.assert_close(last, torch.stack([hidden[0, 3], hidden[1, 1]]))
    mean = pool(hidden, mask, "mean")
    torch.testing.assert_close(mean[1], hidden[1, :2].mean(0))
