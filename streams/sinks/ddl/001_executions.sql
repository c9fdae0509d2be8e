-- Executions: one row per (event, workflow version) evaluation.
-- ReplacingMergeTree on the execution id: a replayed batch inserts the same execution_id again and
-- merges (or FINAL) keep one row. Sort and partition keys hold only values that are identical across
-- replays, otherwise duplicates would land in different parts and never meet.
-- An execution that pauses is written again each time it moves on; `revision` (how many timeline
-- entries it has) is the version column, so a late replay of an earlier phase never replaces a later
-- one. (Tables created before `revision` existed keep `ingested_at` as their version.)
CREATE TABLE IF NOT EXISTS {database}.executions
(
    execution_id String,
    org_id LowCardinality(String),
    workflow_id String,
    workflow_version UInt32,
    event_id String,
    event_type LowCardinality(String),
    lead_id String,
    status LowCardinality(String),
    status_reason String,
    score Int32,
    score_breakdown Map(String, Int32),
    tier LowCardinality(String),
    owner String,
    routing_reason String,
    actions Array(LowCardinality(String)),
    event_occurred_at DateTime64(3, 'UTC'),
    evaluated_at DateTime64(3, 'UTC'),
    revision UInt32 DEFAULT 0,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(event_occurred_at)
ORDER BY (org_id, execution_id);
