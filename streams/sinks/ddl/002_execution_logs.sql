-- Messages recorded by `log` actions.
ALTER TABLE {database}.executions ADD COLUMN IF NOT EXISTS logs Array(String) DEFAULT [] AFTER actions;
