"""An execution's step log: each decision at the time of the phase that made it."""

from __future__ import annotations

from typing import Any

from processors.step_logs import step_log


def _moment(at_ms: int, what: str, step: str = "", actor: str = "", note: str = "") -> dict[str, Any]:
    return {"at_ms": at_ms, "what": what, "step": step, "actor": actor, "note": note, "actions": []}


def _execution(**fields: Any) -> dict[str, Any]:
    return {"execution_id": "x", "lead_id": "l", "decisions": [], "logs": [], "timeline": [], **fields}


def _summary(entries: list[dict[str, Any]]) -> list[tuple[int, str, str | None, str, str]]:
    return [(e["at_ms"], e["source"], e["step"], e["kind"], e["outcome"]) for e in entries]


def test_decisions_after_an_approval_carry_the_time_it_was_decided() -> None:
    execution = _execution(
        decisions=["0:filter:pass", "1:tier:A", "2:approval:approved", "2.0.0:route:emea"],
        logs=["approved path"],
        evaluated_at_ms=5_000,
        timeline=[
            _moment(100, "evaluated"),
            _moment(100, "awaiting_approval", "2", note="apr_1"),
            _moment(5_000, "approved", "2", actor="ada@acme.io"),
            _moment(5_000, "resumed", "2"),
        ],
    )
    assert _summary(step_log(execution)) == [
        (100, "timeline", "", "evaluated", ""),
        (100, "decision", "0", "filter", "pass"),
        (100, "decision", "1", "tier", "A"),
        (100, "timeline", "2", "awaiting_approval", ""),
        (5_000, "timeline", "2", "approved", ""),
        (5_000, "decision", "2", "approval", "approved"),
        (5_000, "decision", "2.0.0", "route", "emea"),
        (5_000, "timeline", "2", "resumed", ""),
        (5_000, "log", None, "log", ""),
    ]
    assert step_log(execution)[4]["actor"] == "ada@acme.io"
    assert step_log(execution)[-1]["message"] == "approved path"


def test_an_exit_while_waiting_opens_its_own_phase() -> None:
    execution = _execution(
        decisions=["0:wait:started", "0:exit"],
        evaluated_at_ms=9,
        timeline=[_moment(1, "evaluated"), _moment(1, "waiting", "0"), _moment(9, "exited", "0")],
    )
    assert [(e["at_ms"], e["kind"]) for e in step_log(execution) if e["source"] == "decision"] == [
        (1, "wait"),
        (9, "exit"),
    ]


def test_a_row_without_a_timeline_keeps_its_decisions_at_its_evaluation() -> None:
    execution = _execution(decisions=["0:filter:fail"], evaluated_at_ms=42)
    assert _summary(step_log(execution)) == [(42, "decision", "0", "filter", "fail")]
