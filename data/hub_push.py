"""`prefloop export --push-to-hub REPO`: the TRL-format export as a Hugging Face Hub dataset.

Everything is built locally first, in a temporary folder laid out as the Hub expects::

    README.md                              the dataset card (below)
    data/train-00000-of-00001.parquet      one file per split (names: --split-name)
    data/test-00000-of-00001.parquet       with --test-fraction

The card's YAML header maps the files to their splits; its text names the aggregation policy
(`data.export.AggregationPolicy`), the labels by source and the pairs each source decided,
and the agreement figures of `data.stats` (human-human Krippendorff's alpha, human-judge
accuracy and Cohen's kappa, the judge's position consistency). With ``--save-local DIR`` the
folder is also kept in DIR (written whole or not at all).

Then one upload: `HfApi.create_repo` (``exist_ok``; ``--private``) and one `upload_folder`,
which is one commit: the repo gets every file or none. The token is the one
`huggingface_hub` finds itself (``HF_TOKEN``, or the one saved by ``hf auth login``); prefloop
never stores it. Offline (``HF_HUB_OFFLINE=1``), without a token, or when the Hub cannot be
reached, `push_export` raises `HubPushError` saying so, and nothing is uploaded.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data.errors import ConfigError, PrefloopError
from data.export import AggregationPolicy, aggregate_verdicts, export_pairs, policy_labels
from data.stats import store_stats
from data.store import PreferenceStore

log = logging.getLogger(__name__)


class HubPushError(PrefloopError):
    """The dataset could not be pushed to the Hugging Face Hub (nothing was uploaded)."""


@dataclass(frozen=True)
class HubPush:
    """Where and how `prefloop export --push-to-hub` publishes the export."""

    repo: str  # the dataset repo, "user/name" or "org/name"
    private: bool = False  # create the repo private (an existing repo keeps its visibility)
    split_names: tuple[str, str] = ("train", "test")  # names of the train and test splits
    save_local: str | None = None  # also keep the folder that is uploaded here
    commit_message: str = "prefloop export"


@dataclass
class HubReport:
    repo: str
    url: str | None
    train: int
    test: int
    files: list[str] = field(default_factory=list)
    saved_to: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_repo_id(repo: str) -> None:
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or any(c in repo for c in " \\:"):
        raise ConfigError(f"--push-to-hub {repo!r}: give the dataset repo as NAMESPACE/NAME")


def build_folder(
    store: PreferenceStore,
    folder: Path,
    push: HubPush,
    *,
    fmt: str,
    test_fraction: float,
    policy: AggregationPolicy,
) -> tuple[int, int]:
    """Write the parquet files and the card into `folder`; returns (train, test) rows."""
    data = folder / "data"
    data.mkdir(parents=True)
    report = export_pairs(
        store, data / "export.parquet", fmt=fmt, test_fraction=test_fraction, policy=policy
    )
    train_name, test_name = push.split_names
    written = [Path(f) for f in report.files]
    names = [train_name, test_name][: len(written)]
    for path, split in zip(written, names, strict=True):
        path.rename(data / f"{split}-00000-of-00001.parquet")
    import pyarrow.parquet as pq

    columns = pq.read_schema(data / f"{train_name}-00000-of-00001.parquet").names
    card = dataset_card(
        store,
        push,
        fmt=fmt,
        policy=policy,
        margin="margin" in columns,
        counts={train_name: report.train, **({test_name: report.test} if len(written) > 1 else {})},
        test_fraction=test_fraction,
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
    return report.train, report.test


def _figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def dataset_card(
    store: PreferenceStore,
    push: HubPush,
    *,
    fmt: str,
    policy: AggregationPolicy,
    counts: dict[str, int],
    test_fraction: float,
    margin: bool = False,
) -> str:
    """The README.md of the dataset repo: YAML header, then what the data is and how it was made."""
    stats = store_stats(store)
    decided = aggregate_verdicts(policy_labels(store, policy), policy)
    by_source: dict[str, int] = {}
    for _, source, _ in decided.values():
        by_source[source] = by_source.get(source, 0) + 1
    labels = stats["labels_by_source"]
    sources = sorted(set(labels) | set(by_source), key=lambda s: (s not in policy.source_rank, s))
    hh, hj, pc = stats["human_human"], stats["human_judge"], stats["judge_position_consistency"]
    splits = "".join(f"  - split: {name}\n    path: data/{name}-*\n" for name in counts)
    total = sum(counts.values())
    size = "n<1K" if total < 1000 else "1K<n<10K" if total < 10_000 else "10K<n<100K"
    columns = {
        "trl": "`prompt`, `chosen`, `rejected` (strings; a multi-turn prompt is an HH transcript "
        "ending in `\\n\\nAssistant:`)",
        "trl-conversational": "`prompt`, `chosen`, `rejected` (lists of `{role, content}` messages)",
        "pairs": "`prompt` (messages), `response_a`, `response_b`, `label` (a, b, tie, both_bad), "
        "`pair_id`",
    }[fmt]
    rows = "\n".join(f"| {s} | {labels.get(s, 0):,} | {by_source.get(s, 0):,} |" for s in sources)
    policy_lines = [
        f"- Sources, highest first: {' > '.join(policy.source_rank)}. A pair's verdict comes "
        "from the highest source that labelled it; lower sources are ignored for that pair.",
        f"- Within that source: {'Dawid-Skene (annotators weighed by their fitted quality)' if policy.human_model == 'dawid-skene' else 'the majority verdict; a split vote gives no label'}.",
        f"- Minimum label confidence: {policy.min_confidence if policy.min_confidence is not None else 'none'}.",
        f"- Ties and both-bad verdicts: {'kept' if policy.include_ties else 'left out (chosen/rejected cannot say them)'}.",
        f"- Gold pairs (annotator tests): {'included, with their gold answer' if policy.include_gold else 'left out'}.",
    ]
    if policy.min_annotator_gold_accuracy is not None:
        policy_lines.append(
            "- Human labels of annotators below "
            f"{policy.min_annotator_gold_accuracy:.0%} accuracy on gold pairs: left out."
        )
    if margin:
        policy_lines.append("- `margin`: the human strength of preference as a reward margin.")
    return f"""---
tags:
- prefloop
- preference
- rlhf
- dpo
- trl
size_categories:
- {size}
configs:
- config_name: default
  data_files:
{splits}---

# {push.repo}

Preference pairs exported by [prefloop](https://pypi.org/project/prefloop/) in TRL's
`{fmt}` format: {columns}. Splits: {", ".join(f"{n} {c:,} rows" for n, c in counts.items())}
{f"(held out by prompt: {test_fraction:.0%} of prompts, never the same prompt in both)" if len(counts) > 1 else ""}.

```python
from datasets import load_dataset

dataset = load_dataset("{push.repo}")
```

## How each pair's label was decided

{chr(10).join(policy_lines)}

## Labels by source

| source | active labels in the store | pairs it decided in this export |
|---|---|---|
{rows}

The store held {stats["pairs"]:,} pairs over {stats["prompts"]:,} prompts; {stats["labelled_pairs"]:,}
were labelled.

## Agreement

- Human-human: Krippendorff's alpha {_figure(hh["krippendorff_alpha"])}, percent agreement
  {_figure(hh["percent_agreement"])}, on {hh["pairs_with_overlap"]:,} pairs with two or more human labels.
- Human-judge: accuracy {_figure(hj["accuracy"])}, Cohen's kappa {_figure(hj["cohen_kappa"])},
  on {hj["pairs"]:,} pairs labelled by both.
- Judge position consistency (same verdict with A and B swapped): {_figure(pc["rate"])}
  on {pc["pairs"]:,} pairs judged in both orders.
"""


def push_export(
    store: PreferenceStore,
    push: HubPush,
    *,
    fmt: str = "trl",
    test_fraction: float = 0.0,
    policy: AggregationPolicy | None = None,
) -> HubReport:
    """Build the dataset folder, keep a copy in `push.save_local`, then upload it in one commit."""
    check_repo_id(push.repo)
    if fmt == "pairs":
        raise ConfigError(
            "--push-to-hub writes the TRL formats: use --format trl or trl-conversational"
        )
    if len(set(push.split_names)) != 2 or not all(
        n.replace("_", "").isalnum() for n in push.split_names
    ):
        raise ConfigError(
            f"--split-name {','.join(push.split_names)}: give one or two split names of letters, "
            "digits and _ (train, then test), e.g. train_prefs,test_prefs"
        )
    policy = policy or AggregationPolicy()
    saved = Path(push.save_local) if push.save_local else None
    if saved is not None and saved.exists() and (not saved.is_dir() or any(saved.iterdir())):
        raise ConfigError(f"--save-local {saved}: exists and is not an empty folder")
    with tempfile.TemporaryDirectory(prefix="prefloop-hub-") as tmp:
        folder = Path(tmp) / "dataset"
        train, test = build_folder(
            store, folder, push, fmt=fmt, test_fraction=test_fraction, policy=policy
        )
        if train + test == 0:
            raise ConfigError(
                "nothing to push: no pair has a label the policy keeps (label some, or import "
                "labels, first)"
            )
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        if saved is not None:
            staging = saved.with_name(f".{saved.name}.partial")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(folder, staging)
            if saved.exists():
                saved.rmdir()
            staging.replace(saved)
        report = HubReport(push.repo, None, train, test, files, str(saved) if saved else None)
        report.url = _upload(folder, push, kept=saved)
    return report


def _upload(folder: Path, push: HubPush, *, kept: Path | None) -> str:
    import huggingface_hub
    from huggingface_hub import constants

    where = f"; the dataset is in {kept}" if kept else "; keep a copy with --save-local DIR"
    if constants.is_offline_mode():
        raise HubPushError(
            f"cannot push to {push.repo}: HF_HUB_OFFLINE is set, so huggingface_hub makes no "
            f"network calls; unset it on a machine that reaches the Hub{where}. Nothing was uploaded"
        )
    if huggingface_hub.get_token() is None:
        raise HubPushError(
            f"cannot push to {push.repo}: no Hugging Face token; set HF_TOKEN or run "
            f"`hf auth login`{where}. Nothing was uploaded"
        )
    api = huggingface_hub.HfApi()
    try:
        api.create_repo(push.repo, repo_type="dataset", private=push.private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=push.repo,
            folder_path=folder,
            repo_type="dataset",
            commit_message=push.commit_message,
        )
    except Exception as exc:  # the hub raises many types: network, auth, permissions, limits
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HubPushError(
            f"pushing to {push.repo} failed ({type(exc).__name__}: {message}); the upload is "
            f"one commit, so no file of it reached the repo{where}"
        ) from None
    log.info("pushed %s to %s", folder, push.repo)
    return str(getattr(commit, "commit_url", "") or f"https://huggingface.co/datasets/{push.repo}")
