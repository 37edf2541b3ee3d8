"""Feature vectors for (prompt, response), built from cached embeddings.

The blocks are those of `docs/ENSEMBLE_ARTIFACT.md`, concatenated in the order given:

* ``joint``: embedding of ``prompt_text + "\\n\\n" + response`` (truncated at the end)
* ``joint_tail``: the same text truncated at the start, so a long conversation cannot
  push the response out of the encoder's window
* ``response``: the response alone
* ``prompt``: the prompt alone (cancels out of a linear head's A-B difference)
* ``prompt_x_response``: element-wise product of the prompt and response embeddings
  (lets a linear head score relevance to the prompt)
* ``length``: ``[log1p(chars), log1p(words)]`` of the response
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from data.errors import ConfigError
from labeling.encoder import DEFAULT_ENCODER_CONFIG, EncoderConfig, embed_texts

if TYPE_CHECKING:
    from data.store import PairView, PreferenceStore

FEATURE_BLOCKS = ("joint", "joint_tail", "response", "prompt", "prompt_x_response", "length")
DEFAULT_FEATURES = ("response", "length")
# Extra L2 on the weights of embedding blocks relative to `length`: the embeddings carry
# little signal beyond length on HH and overfit without it (bench/RESULTS-labeling.md).
DEFAULT_EMBEDDING_PENALTY = 1000.0


def check_features(features: Sequence[str]) -> tuple[str, ...]:
    unknown = [f for f in features if f not in FEATURE_BLOCKS]
    if unknown or not features:
        raise ConfigError(
            f"unknown feature block(s) {unknown or '(none given)'}; choose from {', '.join(FEATURE_BLOCKS)}"
        )
    return tuple(features)


def joint_text(prompt_text: str, response: str) -> str:
    return prompt_text + "\n\n" + response


def length_features(responses: Sequence[str]) -> np.ndarray:
    return np.array(
        [[np.log1p(len(r)), np.log1p(len(r.split()))] for r in responses], dtype=np.float32
    ).reshape(len(responses), 2)


def response_features(
    store: PreferenceStore | None,
    prompts: Sequence[str],
    responses: Sequence[str],
    features: Sequence[str],
    *,
    config: EncoderConfig = DEFAULT_ENCODER_CONFIG,
    encoder: Any | None = None,
) -> tuple[np.ndarray, int]:
    """[N, D] features of each (prompt, response) and how many texts were encoded."""
    features = check_features(features)
    blocks: list[np.ndarray] = []
    encoded = 0
    cache: dict[str, np.ndarray] = {}

    loaded: list[Any] = [encoder] if encoder is not None else []

    def get_encoder() -> Any:  # load the model once, and only if some text is not cached
        if not loaded:
            from labeling.encoder import Encoder

            loaded.append(Encoder(config))
        return loaded[0]

    def embed(kind: str, texts: list[str], side: str = "right") -> np.ndarray:
        nonlocal encoded
        if kind not in cache:
            vectors, n = embed_texts(
                store, texts, config=replace(config, truncation_side=side), encoder=get_encoder
            )
            encoded += n
            cache[kind] = vectors
        return cache[kind]

    for block in features:
        if block == "joint":
            blocks.append(
                embed("joint", [joint_text(p, r) for p, r in zip(prompts, responses, strict=True)])
            )
        elif block == "joint_tail":
            blocks.append(
                embed(
                    "joint_tail",
                    [joint_text(p, r) for p, r in zip(prompts, responses, strict=True)],
                    "left",
                )
            )
        elif block == "response":
            blocks.append(embed("response", list(responses)))
        elif block == "prompt":
            blocks.append(embed("prompt", list(prompts)))
        elif block == "prompt_x_response":
            blocks.append(embed("prompt", list(prompts)) * embed("response", list(responses)))
        elif block == "length":
            blocks.append(length_features(responses))
    return np.concatenate(blocks, axis=1).astype(np.float32), encoded


def pair_features(
    store: PreferenceStore,
    views: Sequence[PairView],
    features: Sequence[str],
    *,
    config: EncoderConfig = DEFAULT_ENCODER_CONFIG,
    encoder: Any | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Features of every pair's A and B side: ([N, D], [N, D], texts encoded)."""
    prompts = [v.prompt_text for v in views]
    x, encoded = response_features(
        store,
        prompts + prompts,
        [v.response_a for v in views] + [v.response_b for v in views],
        features,
        config=config,
        encoder=encoder,
    )
    n = len(views)
    return x[:n], x[n:], encoded


def penalty_scale(features: Sequence[str], dim: int, embedding_penalty: float) -> np.ndarray:
    """[dim] divisors for standardised features: sqrt(embedding_penalty) on embedding blocks.

    Dividing a standardised feature by s multiplies the L2 penalty its weight effectively
    pays by s**2, so the embedding blocks get `embedding_penalty` times the penalty of the
    length block. It is folded into the saved `sigma`, so readers of the artifact need
    nothing new.
    """
    features = check_features(features)
    n_length = 2 if "length" in features else 0
    embedding_blocks = [f for f in features if f != "length"]
    scale = np.ones(dim, dtype=np.float32)
    if not embedding_blocks:
        return scale
    width = (dim - n_length) // len(embedding_blocks)
    start = 0
    for block in features:
        size = 2 if block == "length" else width
        if block != "length":
            scale[start : start + size] = np.sqrt(embedding_penalty)
        start += size
    return scale
