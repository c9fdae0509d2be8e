-- Calls to an external summary provider, as the API records them (they cost per call; an
-- execution's other units are in `executions`). One row per recording, deduplicated on
-- (org_id, workflow_id, call_id) so a retried recording counts once.
CREATE TABLE IF NOT EXISTS {database}.provider_calls
(
    org_id LowCardinality(String),
    workflow_id String,
    call_id String,
    execution_id String,
    calls UInt32,
    at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (org_id, workflow_id, call_id);
