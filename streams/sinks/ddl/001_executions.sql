-- Executions: one row per (event, workflow version) evaluation.
-- ReplacingMergeTree on the execution id: a replayed batch inserts the same execution_id again and
-- merges (or FINAL) keep one row. Sort and partition keys hold only values that are identical across
-- replays, otherwise duplicates would land in different parts and never meet.
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
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(event_occurred_at)
ORDER BY (org_id, execution_id);
