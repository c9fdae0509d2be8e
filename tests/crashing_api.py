"""The real API, made to SIGKILL itself at the worst moments of a control-plane change, for the
propagation test: right before, or right after, the commit of a transaction that records a given
action (e.g. `workflow.activate`), so the client never hears back. Test-only; production code has no
fault hooks."""

from __future__ import annotations

import os
import signal
import sys

import uvicorn
from sqlalchemy import event
from sqlalchemy.orm import Session

from api.app import create_app
from api.control_plane.tables import AuditEntry
from drippulse.settings import load_settings
from drippulse.workers import embedded_background


def _records(session: Session, action: str) -> bool:
    return any(isinstance(row, AuditEntry) and row.action == action for row in session.new)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(moment: str, action: str) -> None:
    if moment == "before-commit":
        event.listen(Session, "before_commit", lambda session: _records(session, action) and _die())
        return

    def mark(session: Session) -> None:
        session.info["crash"] = _records(session, action)

    def after(session: Session) -> None:
        if session.info.pop("crash", False):
            _die()

    event.listen(Session, "before_commit", mark)
    event.listen(Session, "after_commit", after)


if __name__ == "__main__":
    arm(sys.argv[1], sys.argv[2])
    settings = load_settings()
    app = create_app(settings, embedded_background(settings))
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level="warning")
