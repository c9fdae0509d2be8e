"""The orchestrator: executions paused at approval and wait steps, held until their outcome.

`app.py` is the faust-streaming app (its table holds the paused executions, its timers fire due
waits and timeouts, and poll PostgreSQL for decisions); `orchestrator.py` is what it does with each
message of its inbox, free of faust so it can be tested alone; `approval_ledger.py` is its side of
the approvals in PostgreSQL, `due_times.py` its index of what falls due when.
"""
