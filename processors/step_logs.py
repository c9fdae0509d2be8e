"""An execution's history as log entries, one per step event, in the order they happened.

An execution row keeps its history in three arrays: `timeline` (timed: evaluated, paused, decided,
resumed), `decisions` (one `path:kind:outcome` token per deciding step, untimed) and `logs` (the
messages of `log` actions, with neither step nor time). The decisions of one phase are made when
that phase starts: the first phase at the `evaluated` entry, each later one at the timeline entry
that resumed it (an approval decided, a wait elapsed, an exit), whose token opens the phase's
decisions. So each decision gets its phase's time; log messages, which do not say when they were
written, get the time of the execution's latest phase and no step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

RESUMED_BY = {
    "approved": "approval:approved",
    "rejected": "approval:rejected",
    "timed_out": "approval:timed_out",
    "wait_elapsed": "wait:elapsed",
    "exited": "exit",
}
"""Timeline entries that resume a paused execution -> the decision token (after the step's path)
that the orchestrator records for them."""
_RESUMPTION_TOKENS = frozenset(RESUMED_BY.values())

LogEntry = dict[str, Any]


def _split(token: str) -> tuple[str, str, str]:
    """(step path, kind, outcome) of a decision token; a path never holds a colon."""
    step, _, rest = token.partition(":")
    kind, _, outcome = rest.partition(":")
    return step, kind, outcome


def _phases(decisions: Sequence[str]) -> list[list[str]]:
    """The decisions cut where each resumption's token starts a new phase."""
    phases: list[list[str]] = [[]]
    for token in decisions:
        if token.partition(":")[2] in _RESUMPTION_TOKENS:
            phases.append([])
        phases[-1].append(token)
    return phases


def _decision(execution: Mapping[str, Any], at_ms: int, token: str) -> LogEntry:
    step, kind, outcome = _split(token)
    return _entry(execution, at_ms, "decision", step, kind, outcome=outcome)


def _entry(
    execution: Mapping[str, Any],
    at_ms: int,
    source: str,
    step: str | None,
    kind: str,
    outcome: str = "",
    message: str = "",
    actor: str = "",
    actions: Sequence[str] = (),
) -> LogEntry:
    return {
        "execution_id": execution["execution_id"],
        "lead_id": execution["lead_id"],
        "at_ms": at_ms,
        "source": source,
        "step": step,
        "kind": kind,
        "outcome": outcome,
        "message": message,
        "actor": actor,
        "actions": list(actions),
    }


def step_log(execution: Mapping[str, Any]) -> list[LogEntry]:
    """The entries of one execution (a row as `ExecutionsReader` returns it), oldest first."""
    phases = _phases(execution["decisions"])
    entries: list[LogEntry] = []
    phase = 0
    for moment in execution["timeline"]:
        what, at_ms = moment["what"], moment["at_ms"]
        entries.append(
            _entry(
                execution,
                at_ms,
                "timeline",
                moment["step"],
                what,
                message=moment["note"],
                actor=moment["actor"],
                actions=moment["actions"],
            )
        )
        if what == "evaluated" or (what in RESUMED_BY and phase + 1 < len(phases)):
            if what != "evaluated":
                phase += 1
            entries.extend(_decision(execution, at_ms, token) for token in phases[phase])
            phases[phase] = []
    latest = execution["evaluated_at_ms"]
    entries.extend(_decision(execution, latest, token) for rest in phases for token in rest)
    entries.extend(_entry(execution, latest, "log", None, "log", message=text) for text in execution["logs"])
    return entries
