"""Claims of schedule fire times in PostgreSQL (`schedule_fires`): leased, renewed while the run goes
on, completed only by the claim that holds them.

A claim is one process's attempt at one fire time, named by a token of its own (`claimed_by`,
`host:pid/claim`), so the completion or a renewal of an attempt that lost the fire time (its lease
ran out while it was paused, and another process took over) changes nothing. Lease times are
PostgreSQL's clock, the one clock every process shares, so a process whose clock is ahead cannot
take over a live claim early.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, text

from streams.clock import moment

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """Another process took the fire time over: this attempt stops, and produces or completes nothing
    more."""


@dataclass(frozen=True)
class Claim:
    workflow_id: str
    fire_ms: int
    holder: str


class FireClaims:
    def __init__(self, engine: Engine, name: str, lease_ms: int) -> None:
        self._engine = engine
        self._name = name
        self.lease_ms = lease_ms

    def claim(self, org_id: str, workflow_id: str, version: int, fire_ms: int) -> Claim | None:
        """The fire time for this process: claimed first, or taken over from a claim left unrenewed
        for longer than the lease; None when another claim holds it or it is completed."""
        holder = f"{self._name}/{uuid.uuid4().hex[:12]}"
        with self._engine.begin() as connection:
            claimed = connection.execute(
                text(
                    "INSERT INTO schedule_fires "
                    "(workflow_id, fire_at, org_id, workflow_version, claimed_by, claimed_at) "
                    "VALUES (:workflow_id, :fire_at, :org_id, :version, :holder, clock_timestamp()) "
                    "ON CONFLICT (workflow_id, fire_at) DO UPDATE SET claimed_by = EXCLUDED.claimed_by, "
                    "claimed_at = EXCLUDED.claimed_at "
                    "WHERE schedule_fires.completed_at IS NULL "
                    "AND schedule_fires.claimed_at < clock_timestamp() - :lease_ms * interval '1 millisecond' "
                    "RETURNING claimed_by"
                ),
                {
                    "workflow_id": workflow_id,
                    "fire_at": moment(fire_ms),
                    "org_id": org_id,
                    "version": version,
                    "holder": holder,
                    "lease_ms": self.lease_ms,
                },
            ).first()
        return Claim(workflow_id, fire_ms, holder) if claimed is not None else None

    def completed(self, workflow_id: str, fire_ms: int) -> bool:
        with self._engine.connect() as connection:
            done = connection.execute(
                text("SELECT completed_at IS NOT NULL FROM schedule_fires WHERE workflow_id = :id AND fire_at = :at"),
                {"id": workflow_id, "at": moment(fire_ms)},
            ).scalar()
        return bool(done)

    def renew(self, claim: Claim) -> bool:
        """Whether the claim still holds the fire time, its lease now starting again."""
        return self._update(claim, "claimed_at = clock_timestamp()", {})

    def complete(self, claim: Claim, leads: int) -> None:
        if not self._update(claim, "completed_at = clock_timestamp(), leads = :leads", {"leads": leads}):
            raise LeaseLost(f"{claim.holder} no longer holds {claim.workflow_id} at {moment(claim.fire_ms)}")

    def _update(self, claim: Claim, assignments: str, values: dict[str, int]) -> bool:
        with self._engine.begin() as connection:
            updated = connection.execute(
                text(
                    f"UPDATE schedule_fires SET {assignments} WHERE workflow_id = :id AND fire_at = :at "
                    "AND claimed_by = :holder AND completed_at IS NULL"
                ),
                {"id": claim.workflow_id, "at": moment(claim.fire_ms), "holder": claim.holder, **values},
            )
        return updated.rowcount == 1

    @contextmanager
    def held(self, claim: Claim) -> Iterator[Lease]:
        """Renews the claim every third of the lease in a thread while the block runs, however long
        one step of it takes (a segment query, a produce), so a live run is never taken over."""
        lease = Lease(self, claim)
        lease.start()
        try:
            yield lease
        finally:
            lease.stop()


class Lease:
    def __init__(self, claims: FireClaims, claim: Claim) -> None:
        self._claims = claims
        self._claim = claim
        self._stopped = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{claim.workflow_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def check(self) -> None:
        """Raises LeaseLost once a renewal found the fire time taken over."""
        if self._lost.is_set():
            raise LeaseLost(f"{self._claim.holder} lost {self._claim.workflow_id} at {moment(self._claim.fire_ms)}")

    def _renew(self) -> None:
        """A renewal that fails (PostgreSQL unavailable) is tried again at the next beat: while
        PostgreSQL is down nobody can take the claim over either."""
        while not self._stopped.wait(self._claims.lease_ms / 3000):
            try:
                if not self._claims.renew(self._claim):
                    self._lost.set()
                    return
            except Exception:
                log.warning("renewing the claim on %s failed; trying again", self._claim.workflow_id, exc_info=True)
