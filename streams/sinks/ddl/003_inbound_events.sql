-- Inbound history: every decodable event of drip.events.inbound, as the engine sees it (JSON), so
-- POST /workflows/{id}/replay can run real traffic through two workflow versions. Deduplicated on
-- (org_id, event_id) like executions; kept 90 days.
CREATE TABLE IF NOT EXISTS {database}.inbound_events
(
    org_id LowCardinality(String),
    event_id String,
    event_type LowCardinality(String),
    lead_id String,
    occurred_at DateTime64(3, 'UTC'),
    event_json String CODEC(ZSTD(3)),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (org_id, event_id)
TTL toDateTime(occurred_at) + INTERVAL 90 DAY;
