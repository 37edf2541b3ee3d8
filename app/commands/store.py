"""Store commands: import, export, stats."""

from __future__ import annotations

from typing import Any

import click

from app.cli_common import db_option, emit, json_option, open_store
from app.tool_suggestions import PREDICTIONS, tool_suggestions
from data.errors import ConfigError, ImportValidationError
from data.export import EXPORT_FORMATS, HUMAN_MODELS, AggregationPolicy, export_pairs
from data.formats_labelstudio import TEMPLATES
from data.hub_push import HubPush, push_export
from data.importer import IMPORT_FORMATS, ImportOptions, import_sources
from data.queue import QueueCounts
from data.shapes import ShapeConfig
from data.stats import store_stats
from data.tool_export import PAIR_SETS, export_for_tool, pairs_for_tool
from data.tool_records import TOOL_FORMATS, ToolConfig
from training import runs


@click.command("import")
@click.argument("sources", nargs=-1, required=True)
@db_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(IMPORT_FORMATS),
    default="auto",
    show_default=True,
    help="Row shape; auto detects it from the first readable row of each source (a Label "
    "Studio JSON export, an Argilla dataset folder, and the preference shapes).",
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Import the valid rows and write rejected ones to a report, instead of all-or-nothing.",
)
@click.option(
    "--report",
    "report_path",
    default=None,
    help="Where --skip-invalid writes rejected rows (JSONL). Default: next to the store.",
)
@click.option(
    "--who", default="import", show_default=True, help="Labeller recorded on imported labels."
)
@click.option(
    "--labels",
    "label_mode",
    type=click.Choice(("use", "as-reference")),
    default="use",
    show_default=True,
    help="use: imported labels train the models and keep their pairs away from humans and "
    "the judge; as-reference: keep them only to measure against (calibration, reports, "
    "benchmarks), so the pairs are routed and labelled like unlabelled ones.",
)
@click.option(
    "--gold",
    is_flag=True,
    help="The sources' verdicts are gold answers: the pairs are mixed blind into annotators' "
    "queues to measure them (`prefloop gold`, `prefloop annotators`), never routed, and left "
    "out of the export unless --include-gold. Every pair needs exactly one verdict.",
)
@click.option("--split", default=None, help="Split of a Hugging Face dataset (default: train).")
@click.option(
    "--max-text-chars",
    type=int,
    default=ShapeConfig.max_text_chars,
    show_default=True,
    help="Reject texts longer than this.",
)
@click.option(
    "--max-pairs-per-prompt",
    type=int,
    default=ShapeConfig.max_pairs_per_prompt,
    show_default=True,
    help="Pairs formed per prompt from a list of responses.",
)
@click.option(
    "--label-config",
    default=None,
    help="Label Studio: the project's labeling config (XML), which says which data keys hold "
    "the prompt and the two responses (default: common names such as prompt/answer1/answer2).",
)
@click.option(
    "--question",
    default=None,
    help="Label Studio control / Argilla question holding the preference, when there are several.",
)
@click.option(
    "--choice",
    "choices",
    multiple=True,
    metavar="TEXT=VERDICT",
    help="Read a Label Studio choice or Argilla label TEXT as VERDICT (a, b, tie, both_bad); "
    "repeatable. A/B, left/right, the response field names, tie and both bad are read already.",
)
@json_option
def import_command(
    sources: tuple[str, ...],
    db: str,
    fmt: str,
    skip_invalid: bool,
    report_path: str | None,
    who: str,
    label_mode: str,
    gold: bool,
    split: str | None,
    max_text_chars: int,
    max_pairs_per_prompt: int,
    label_config: str | None,
    question: str | None,
    choices: tuple[str, ...],
    as_json: bool,
) -> None:
    """Import preference data from SOURCES (files, dataset folders or hub ids) into the store.

    Label Studio exports and Argilla datasets import their annotators' answers as human
    labels, with the annotator as the labeller."""
    options = ImportOptions(
        format=fmt,
        skip_invalid=skip_invalid,
        report_path=report_path,
        who=who,
        labels=label_mode,
        gold=gold,
        split=split,
        shape=ShapeConfig(max_text_chars=max_text_chars, max_pairs_per_prompt=max_pairs_per_prompt),
        progress=not as_json,
        tool=ToolConfig(label_config, question, tuple(_choice(c) for c in choices)),
    )
    with open_store(db) as store:
        try:
            report = import_sources(store, sources, options)
        except ImportValidationError as exc:
            if as_json:
                emit(
                    {
                        "error": str(exc),
                        "invalid": len(exc.problems),
                        "imported_pairs": 0,
                        "problems": [p.as_dict() for p in exc.problems[:20]],
                    },
                    True,
                )
            for problem in exc.problems[1:10]:
                click.echo(f"  {problem}", err=True)
            raise
    result = report.as_dict()
    emit(result, as_json, _import_summary)


def _choice(text: str) -> tuple[str, str]:
    choice, sep, verdict = text.rpartition("=")
    if not sep or not choice.strip():
        raise ConfigError(f"--choice {text!r}: write it as TEXT=VERDICT, e.g. 'Left wins=a'")
    return choice, verdict.strip().lower()


def _import_summary(result: dict[str, object]) -> str:
    lines = [
        f"imported {result['imported_pairs']} pairs, {result['labels']} labels "
        f"({result['duplicates']} duplicate rows skipped, {result['invalid']} invalid)"
    ]
    if result.get("reference_labels"):
        lines.append(
            f"{result['reference_labels']} labels kept as reference only (never trained on; "
            "the pairs are routed like unlabelled ones)"
        )
    if result.get("feedback"):
        lines.append(
            f"{result['feedback']} unpaired thumbs up/down rows (train them with "
            "`prefloop train kto`)"
        )
    if result.get("gold_answers"):
        lines.append(
            f"{result['gold_answers']} gold answers kept (never labels; the pairs are mixed "
            "blind into annotators' queues)"
        )
    if result["report"]:
        lines.append(f"rejected rows listed in {result['report']}")
    return "\n".join(lines)


@click.command("export")
@db_option
@click.option(
    "--out",
    "out",
    default=None,
    help="Output: FILE.jsonl, FILE.parquet, or a folder (Hugging Face save_to_disk); "
    "labelstudio: FILE.json; argilla: a new folder. Not needed with --push-to-hub.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice((*EXPORT_FORMATS, *TOOL_FORMATS)),
    default="trl",
    show_default=True,
    help="trl: prompt/chosen/rejected strings; trl-conversational: message lists; "
    "pairs: prompt/response_a/response_b/label, ties kept; labelstudio / argilla: pairs to "
    "label in that tool (see --pairs, --predictions), its export imports back as human labels.",
)
@click.option(
    "--pairs",
    "pair_set",
    type=click.Choice(PAIR_SETS),
    default="human-queue",
    show_default=True,
    help="labelstudio/argilla: which pairs to send; human-queue: the ones routing gave to "
    "humans that still want labels, highest priority first.",
)
@click.option(
    "--limit", type=int, default=None, help="labelstudio/argilla: at most this many pairs."
)
@click.option(
    "--predictions",
    type=click.Choice(PREDICTIONS),
    default="auto",
    show_default=True,
    help="labelstudio/argilla: prefloop's verdict shown as each task's pre-annotation; auto: "
    "the judge's where it judged the pair, else the latest ensemble's.",
)
@click.option(
    "--template",
    type=click.Choice(TEMPLATES),
    default="pairwise",
    show_default=True,
    help="labelstudio: the Pairwise tag (A or B) or Choices (A, B, tie, both bad); the "
    "labeling config is written next to the tasks.",
)
@click.option(
    "--push-to-hub",
    "hub_repo",
    default=None,
    metavar="REPO",
    help="Push the TRL-format export, with a dataset card, to this Hugging Face dataset repo "
    "(token: HF_TOKEN or `hf auth login`). Built locally first, uploaded in one commit.",
)
@click.option("--private", is_flag=True, help="--push-to-hub: create the repo private.")
@click.option(
    "--split-name",
    default="train,test",
    show_default=True,
    help="--push-to-hub: names of the train split and (with --test-fraction) the test split.",
)
@click.option(
    "--save-local",
    default=None,
    metavar="DIR",
    help="--push-to-hub: also keep the uploaded folder (parquet files and README.md) in DIR.",
)
@click.option(
    "--test-fraction",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of prompts held out as a test split (split by prompt, never by pair).",
)
@click.option(
    "--min-confidence",
    type=float,
    default=None,
    help="Ignore labels whose confidence is below this.",
)
@click.option(
    "--include-gold",
    is_flag=True,
    help="Export gold pairs too, with their gold answer as the verdict (left out by default).",
)
@click.option(
    "--min-annotator-gold-accuracy",
    type=float,
    default=None,
    help="Leave out the human labels of annotators whose accuracy on their last gold pairs "
    "(`prefloop gold --window`) is below this; annotators with fewer than `--min-gold` gold "
    "pairs are kept.",
)
@click.option(
    "--human-model",
    type=click.Choice(HUMAN_MODELS),
    default="majority",
    show_default=True,
    help="How human votes on a pair become one: the majority, or Dawid-Skene (each annotator "
    "weighed by their fitted quality; split votes get a verdict too).",
)
@click.option(
    "--for",
    "rl_target",
    type=click.Choice(("openrlhf", "verl")),
    default=None,
    help="Write the store's prompts (not pairs) as an RL prompt dataset: openrlhf: "
    "FILE.jsonl (--input_key input --apply_chat_template); verl: FILE.parquet (prompt, "
    "reward_model, extra_info). --prompts and --limit choose which; score them with "
    "`prefloop serve-reward`.",
)
@click.option(
    "--prompts",
    "rl_prompts",
    type=click.Choice(("all", "unlabelled")),
    default="all",
    show_default=True,
    help="--for: every prompt, or the prompts with no labelled pair.",
)
@json_option
def export_command(
    db: str,
    out: str,
    fmt: str,
    test_fraction: float,
    min_confidence: float | None,
    include_gold: bool,
    min_annotator_gold_accuracy: float | None,
    human_model: str,
    pair_set: str,
    limit: int | None,
    predictions: str,
    template: str,
    hub_repo: str | None,
    private: bool,
    split_name: str,
    save_local: str | None,
    rl_target: str | None,
    rl_prompts: str,
    as_json: bool,
) -> None:
    """Export labelled pairs (adjudication > human > import > judge > model; majority) as
    TRL-ready data. Gold pairs are left out unless --include-gold. With --for openrlhf|verl:
    the prompts as an RL prompt dataset instead."""
    if rl_target is not None:
        from data.rl_prompts import write_rl_prompts

        if not out:
            raise ConfigError(f"--for {rl_target} needs --out FILE")
        with open_store(db, read_only=True) as store:
            written = write_rl_prompts(store, out, target=rl_target, which=rl_prompts, limit=limit)
        emit(
            written,
            as_json,
            lambda r: f"wrote {r['prompts']} prompts for {r['target']} to {r['file']}",
        )
        return
    if min_annotator_gold_accuracy is not None and not 0 <= min_annotator_gold_accuracy <= 1:
        raise ConfigError(
            f"--min-annotator-gold-accuracy {min_annotator_gold_accuracy} must be between 0 and 1"
        )
    policy = AggregationPolicy(
        min_confidence=min_confidence,
        include_ties=fmt == "pairs",
        include_gold=include_gold,
        min_annotator_gold_accuracy=min_annotator_gold_accuracy,
        human_model=human_model,
    )
    if hub_repo and (out or fmt in TOOL_FORMATS):
        raise ConfigError(
            "--push-to-hub writes the TRL formats and takes no --out; keep a copy with "
            "--save-local DIR"
        )
    if fmt in TOOL_FORMATS:
        if not out:
            raise ConfigError(f"--format {fmt} needs --out")
        with open_store(db, read_only=True) as store:
            pairs = pairs_for_tool(store, pair_set, limit)
            hints = tool_suggestions(store, [p.pair_id for p in pairs], predictions)
            files = export_for_tool(out, fmt, pairs, hints, template=template)
        result = {"pairs": len(pairs), "predictions": len(hints), "files": files}
        emit(
            result,
            as_json,
            lambda r: (
                f"wrote {r['pairs']} pairs ({r['predictions']} with "
                f"a pre-annotation) to {', '.join(r['files'])}"
            ),
        )
        return
    if hub_repo:
        names = [n.strip() for n in split_name.split(",")]
        push = HubPush(
            hub_repo, private, (names[0], names[1] if len(names) > 1 else "test"), save_local
        )
        with open_store(db, read_only=True) as store:
            pushed = push_export(store, push, fmt=fmt, test_fraction=test_fraction, policy=policy)
        emit(
            pushed.as_dict(),
            as_json,
            lambda r: f"pushed {r['train']} train and {r['test']} test rows to {r['url']}",
        )
        return
    if not out:
        raise ConfigError("give --out FILE (or --push-to-hub REPO)")
    with open_store(db, read_only=True) as store:
        report = export_pairs(store, out, fmt=fmt, test_fraction=test_fraction, policy=policy)
    emit(
        report.as_dict(),
        as_json,
        lambda r: f"wrote {r['train']} train and {r['test']} test rows to {', '.join(r['files'])}",
    )


@click.command("stats")
@db_option
@json_option
def stats_command(db: str, as_json: bool) -> None:
    """Counts of pairs and labels, and human-human / human-judge agreement."""
    with open_store(db, read_only=True) as store:
        emit({**store_stats(store), "runs": runs.status_counts(store)}, as_json, _stats_summary)


def _stats_summary(s: dict[str, Any]) -> str:
    def measure(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    q = QueueCounts(**s["queues"])
    by_source = ", ".join(f"{k} {v:,}" for k, v in sorted(s["labels_by_source"].items()))
    hh, hj = s["human_human"], s["human_judge"]
    lines = [
        f"{s['pairs']:,} pairs over {s['prompts']:,} prompts; {s['labelled_pairs']:,} labelled, "
        f"{s['unlabelled_pairs']:,} not",
        f"labels: {s['labels']:,} ({by_source or 'none'})"
        + (
            f"; {s['reference_labels']:,} reference labels (measure only)"
            if s["reference_labels"]
            else ""
        ),
        f"queues: {q.sentence()}",
        f"human-human: Krippendorff's alpha {measure(hh['krippendorff_alpha'])} on "
        f"{hh['pairs_with_overlap']:,} overlapping pairs",
        f"human-judge: accuracy {measure(hj['accuracy'])}, Cohen's kappa "
        f"{measure(hj['cohen_kappa'])} on {hj['pairs']:,} pairs",
        f"judge position consistency: {measure(s['judge_position_consistency']['rate'])} on "
        f"{s['judge_position_consistency']['pairs']:,} pairs",
        "runs: " + (", ".join(f"{k} {v}" for k, v in s["runs"].items()) or "none"),
    ]
    return "\n".join(lines)


COMMANDS: list[click.Command] = [import_command, export_command, stats_command]
