-- One row per (CRM command, integration connection): applied or failed, after how many attempts.
-- ReplacingMergeTree on result_id: a replayed batch finds the command already applied (Redis marks
-- it) or, at worst, writes the same result_id again.
CREATE TABLE IF NOT EXISTS {database}.crm_command_results
(
    result_id String,
    command_id String,
    org_id LowCardinality(String),
    connection_id String,
    connector LowCardinality(String),
    execution_id String,
    lead_id String,
    operation LowCardinality(String),
    status LowCardinality(String),
    attempts UInt16,
    status_code Nullable(UInt16),
    error String,
    crm_object_id Nullable(String),
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY (org_id, connection_id, result_id);
