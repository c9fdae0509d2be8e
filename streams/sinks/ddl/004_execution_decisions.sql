-- Which path each execution took: one token per deciding step (path:kind:outcome), e.g.
-- SELECT count() FROM executions FINAL WHERE has(decisions, '3:route:emea')
ALTER TABLE {database}.executions ADD COLUMN IF NOT EXISTS decisions Array(LowCardinality(String)) DEFAULT [] AFTER logs;
