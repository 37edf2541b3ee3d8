"""The store's schema as an ordered list of migrations.

Each migration runs once, inside one transaction, and bumps `meta.schema_version`.
Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

SOURCES = ("human", "judge", "import", "model")
VERDICTS = ("a", "b", "tie", "both_bad")
QUEUES = ("unrouted", "human", "judge")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def swap_verdict(verdict: str) -> str:
    """The same judgement with A and B renamed; tie, both_bad (and anything else) unchanged."""
    return {"a": "b", "b": "a"}.get(verdict, verdict)


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


MIGRATIONS: list[str] = [
    # 1: everything the loop needs, so later packages add rows, not tables.
    f"""
    CREATE TABLE prompts (
        prompt_id VARCHAR PRIMARY KEY,
        messages JSON NOT NULL,          -- [{{"role": ..., "content": ...}}, ...]
        text VARCHAR NOT NULL,           -- rendered transcript, for display and encoders
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE responses (
        response_id VARCHAR PRIMARY KEY, -- hash of text: identical texts are one row
        text VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    -- which responses were offered for which prompt (list-of-responses imports, generation)
    CREATE TABLE prompt_responses (
        prompt_id VARCHAR NOT NULL,
        response_id VARCHAR NOT NULL,
        origin VARCHAR NOT NULL,
        meta JSON,                       -- e.g. sampling parameters of a generation
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (prompt_id, response_id)
    );
    CREATE TABLE pairs (
        pair_id VARCHAR PRIMARY KEY,     -- independent of A/B order
        prompt_id VARCHAR NOT NULL,
        response_a_id VARCHAR NOT NULL,  -- A is the response with the smaller id
        response_b_id VARCHAR NOT NULL,
        origin VARCHAR NOT NULL,
        queue VARCHAR NOT NULL DEFAULT 'unrouted' CHECK (queue IN {_in(QUEUES)}),
        priority DOUBLE NOT NULL DEFAULT 0,
        route_reason VARCHAR,
        routed_round INTEGER,
        needed_labels INTEGER NOT NULL DEFAULT 1, -- human labels wanted (overlap)
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    -- The human queue, rewritten in priority order by every routing, so that DuckDB's
    -- top-N scan stops after the first row groups (zonemaps) even at millions of pairs.
    CREATE TABLE human_queue (
        pair_id VARCHAR PRIMARY KEY,
        priority DOUBLE NOT NULL,
        needed_labels INTEGER NOT NULL,
        human_labels INTEGER NOT NULL DEFAULT 0   -- active human labels, kept by the store
    );
    CREATE SEQUENCE label_id_seq START 1;
    CREATE TABLE labels (
        label_id BIGINT PRIMARY KEY DEFAULT nextval('label_id_seq'),
        pair_id VARCHAR NOT NULL,
        source VARCHAR NOT NULL CHECK (source IN {_in(SOURCES)}),
        who VARCHAR NOT NULL,            -- annotator id, judge model, file name
        verdict VARCHAR NOT NULL CHECK (verdict IN {_in(VERDICTS)}), -- relative to stored A/B
        confidence DOUBLE,               -- P(verdict), when known
        rationale VARCHAR,
        swapped BOOLEAN NOT NULL DEFAULT false, -- A/B were shown to the labeller swapped
        round INTEGER NOT NULL DEFAULT 0,
        meta JSON,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        retracted_at TIMESTAMP           -- undo keeps the row for audit
    );
    CREATE INDEX labels_pair ON labels (pair_id);
    CREATE TABLE leases (
        pair_id VARCHAR PRIMARY KEY,     -- one holder at a time
        annotator VARCHAR NOT NULL,
        expires_at TIMESTAMP NOT NULL
    );
    CREATE TABLE pair_flags (
        pair_id VARCHAR NOT NULL,
        flag VARCHAR NOT NULL,           -- judge_inconsistent, judge_ensemble_disagree, ...
        detail JSON,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (pair_id, flag)
    );
    CREATE TABLE embeddings (
        encoder VARCHAR NOT NULL,
        text_hash VARCHAR NOT NULL,
        vector FLOAT[] NOT NULL,
        PRIMARY KEY (encoder, text_hash)
    );
    CREATE TABLE ensembles (
        version INTEGER PRIMARY KEY,
        encoder VARCHAR NOT NULL,
        config JSON NOT NULL,
        metrics JSON,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE scores (
        pair_id VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        member_p_a FLOAT[] NOT NULL,     -- each member's P(A > B)
        p_mean DOUBLE NOT NULL,
        p_std DOUBLE NOT NULL,
        PRIMARY KEY (pair_id, version)
    );
    CREATE TABLE judge_calls (
        cache_key VARCHAR PRIMARY KEY,   -- hash of (endpoint, model, parameters, messages)
        endpoint VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        request JSON NOT NULL,
        response_text VARCHAR,
        logprobs JSON,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE judgements (
        pair_id VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        template_hash VARCHAR NOT NULL,
        order_shown VARCHAR NOT NULL CHECK (order_shown IN ('ab', 'ba')),
        cache_key VARCHAR,
        status VARCHAR NOT NULL CHECK (status IN ('ok', 'failed')),
        verdict VARCHAR,                 -- relative to stored A/B; NULL when failed
        p_a DOUBLE,
        raw_text VARCHAR,
        error VARCHAR,
        batch_id VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (pair_id, model, template_hash, order_shown)
    );
    CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        status VARCHAR NOT NULL CHECK (status IN {_in(RUN_STATUSES)}),
        config JSON,
        run_dir VARCHAR,
        artifact_path VARCHAR,
        metrics JSON,
        log_tail VARCHAR,
        promoted BOOLEAN NOT NULL DEFAULT false,
        parent_run_id VARCHAR,
        pid INTEGER,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        started_at TIMESTAMP,
        finished_at TIMESTAMP
    );
    CREATE TABLE ref_logprobs (
        prompt_id VARCHAR NOT NULL,
        response_id VARCHAR NOT NULL,
        ref_model_hash VARCHAR NOT NULL,
        template_hash VARCHAR NOT NULL,
        logp DOUBLE NOT NULL,
        n_tokens INTEGER NOT NULL,
        PRIMARY KEY (prompt_id, response_id, ref_model_hash, template_hash)
    );
    """,
    # 2: skipped pairs survive a restart of the app (passed over until nothing else is left)
    """
    CREATE TABLE skips (
        annotator VARCHAR NOT NULL,
        pair_id VARCHAR NOT NULL,
        skipped_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (annotator, pair_id)
    );
    """,
    # 3: imported labels kept only to measure against (`import --labels as-reference`):
    # never trained on, never routed around; used by calibration, reports and benchmarks
    f"""
    CREATE TABLE reference_labels (
        pair_id VARCHAR NOT NULL,
        who VARCHAR NOT NULL,            -- the file or --who of the import
        verdict VARCHAR NOT NULL CHECK (verdict IN {_in(VERDICTS)}), -- relative to stored A/B
        confidence DOUBLE,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (pair_id, who, verdict)
    );
    """,
    # 4: an admin's correction of a label (the Review tab): the old label is retracted and
    # a new human label by the admin replaces it; this row says who, why and when
    """
    CREATE TABLE label_corrections (
        old_label_id BIGINT PRIMARY KEY, -- a label is retracted, so corrected, at most once
        new_label_id BIGINT NOT NULL UNIQUE,
        pair_id VARCHAR NOT NULL,
        admin VARCHAR NOT NULL,
        reason VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    """,
    # 5: the labels that count (not retracted), for every reader outside the label writers
    # (data.store, data.queue, data.click_batch, data.ingest, judges.writer). A migration that
    # adds a column to `labels` must re-create this view: `SELECT *` is bound when created.
    """
    CREATE VIEW active_labels AS SELECT * FROM labels WHERE retracted_at IS NULL;
    """,
    # 6: `prefloop loop`: one row per loop (its config, so `--resume` rebuilds the plan) and
    # one per (round, stage) with status and wall-clock interval (epoch seconds), so a killed
    # loop resumes after the last finished stage and tests can check what overlapped; the
    # pairs each round generated, with the policy they came from and its staleness in rounds
    """
    CREATE TABLE loops (
        loop_id VARCHAR PRIMARY KEY,
        config JSON NOT NULL,
        status VARCHAR NOT NULL CHECK (status IN ('running', 'stopped', 'finished', 'failed')),
        stop_reason VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        finished_at TIMESTAMP
    );
    CREATE TABLE loop_rounds (
        loop_id VARCHAR NOT NULL,
        round INTEGER NOT NULL,
        stage VARCHAR NOT NULL,
        status VARCHAR NOT NULL CHECK (status IN ('running', 'done', 'failed', 'skipped')),
        started_at DOUBLE,               -- time.time() when the stage started
        finished_at DOUBLE,
        counts JSON,                     -- what the stage did (pairs, labels, metrics)
        run_id VARCHAR,                  -- the training or generation run, when there is one
        promoted BOOLEAN,
        error VARCHAR,
        PRIMARY KEY (loop_id, round, stage)
    );
    CREATE TABLE loop_pairs (
        loop_id VARCHAR NOT NULL,
        round INTEGER NOT NULL,
        pair_id VARCHAR NOT NULL,
        policy VARCHAR NOT NULL,         -- the policy the responses were sampled from
        staleness INTEGER NOT NULL,      -- finished training rounds that policy does not include
        PRIMARY KEY (loop_id, pair_id)
    );
    """,
    # 7: quality control (issue 17). When each annotator was given each pair (a lease that
    # starts; re-leasing a pair its holder already has keeps the start): time per label is
    # lease to label (data.queue). Gold answers: pairs with a known verdict, mixed blind into
    # annotators' queues (data.gold). Adjudications: an adjudicator's final verdict on a pair
    # whose human votes split; it outranks human votes in the export (data.adjudication).
    f"""
    CREATE TABLE lease_starts (
        pair_id VARCHAR NOT NULL,
        annotator VARCHAR NOT NULL,
        started_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE gold_answers (
        pair_id VARCHAR PRIMARY KEY,
        verdict VARCHAR NOT NULL CHECK (verdict IN {_in(VERDICTS)}), -- relative to stored A/B
        who VARCHAR NOT NULL,            -- the file (or --who) the answer came from
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE SEQUENCE adjudication_id_seq START 1;
    CREATE TABLE adjudications (
        adjudication_id BIGINT PRIMARY KEY DEFAULT nextval('adjudication_id_seq'),
        pair_id VARCHAR NOT NULL,
        adjudicator VARCHAR NOT NULL,
        verdict VARCHAR NOT NULL CHECK (verdict IN {_in(VERDICTS)}), -- relative to stored A/B
        rationale VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    """,
    # 8: unpaired feedback (a thumbs up or down on one response to a prompt), for KTO:
    # imported as prompt / completion / label rows (data.feedback)
    """
    CREATE TABLE feedback (
        prompt_id VARCHAR NOT NULL,
        response_id VARCHAR NOT NULL,
        desirable BOOLEAN NOT NULL,      -- thumbs up (true) or down (false)
        who VARCHAR NOT NULL,            -- the file (or --who) the feedback came from
        source VARCHAR NOT NULL,         -- import, human
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (prompt_id, response_id, who)
    );
    """,
    # OpenAI Batch API batches of the judge (`prefloop judge --batch-api`), owned by
    # judges/openai_batch.py: a killed prefloop finds its batch here and polls it again
    """
    CREATE TABLE judge_api_batches (
        batch_id VARCHAR PRIMARY KEY,    -- the provider's batch id
        scope VARCHAR NOT NULL,          -- endpoint, template, models, orders, params (hashed)
        endpoint VARCHAR NOT NULL,
        input_file_id VARCHAR NOT NULL,
        request_keys JSON NOT NULL,      -- the cache keys of its lines (their custom_id)
        status VARCHAR NOT NULL,         -- submitted, ingested
        provider_status VARCHAR,         -- completed, failed, expired, cancelled
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        updated_at TIMESTAMP
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
