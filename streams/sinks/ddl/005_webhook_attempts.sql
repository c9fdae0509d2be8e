-- Every webhook delivery attempt: what was sent where, what came back, what happens next.
-- The API's delivery list is the latest attempt per delivery_id. attempt_id is unique per attempt,
-- so a replayed Kafka batch collapses on it while two real attempts with the same number (a lease
-- that expired under a dying worker) both stay visible.
CREATE TABLE IF NOT EXISTS {database}.webhook_attempts
(
    attempt_id String,
    delivery_id String,
    org_id LowCardinality(String),
    webhook_id String,
    message_id String,
    event_type LowCardinality(String),
    attempt UInt16,
    url String,
    result LowCardinality(String),
    status_code Nullable(UInt16),
    latency_ms UInt32,
    error String,
    response_excerpt String,
    attempted_at DateTime64(3, 'UTC'),
    next_attempt_at Nullable(DateTime64(3, 'UTC'))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (org_id, webhook_id, delivery_id, attempt_id);
