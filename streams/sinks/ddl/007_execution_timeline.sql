-- Orchestration: what started an execution (event, manual, schedule), what happened to it over time,
-- and while it is paused, the step it waits at and until when. Enrollments are the executions whose
-- status is awaiting_approval or waiting, e.g.
-- SELECT lead_id, paused_step, due_at FROM executions FINAL WHERE workflow_id = 'wf_…' AND status = 'waiting'
ALTER TABLE {database}.executions ADD COLUMN IF NOT EXISTS revision UInt32 DEFAULT 0 AFTER evaluated_at;
ALTER TABLE {database}.executions ADD COLUMN IF NOT EXISTS trigger LowCardinality(String) DEFAULT 'event' AFTER event_type;
ALTER TABLE {database}.executions ADD COLUMN IF NOT EXISTS timeline Array(Tuple(at DateTime64(3, 'UTC'), what LowCardinality(String), step String, actor String, note String, actions Array(String))) DEFAULT [] AFTER decisions;
ALTER TABLE {database}.executions ADD COLUMN IF NOT EXISTS paused_step String DEFAULT '' AFTER timeline;
ALTER TABLE {database}.executions ADD COLUMN IF NOT EXISTS due_at Nullable(DateTime64(3, 'UTC')) AFTER paused_step;
