"""People: users, their memberships (roles per organization), invitations and login sessions.

A user is global (one email, one password) and belongs to organizations through memberships, each
with one or more roles. Deactivation is per membership: an organization's admin can cut a person off
from that organization, never from another one. Authentication reads the membership on every
request, so a deactivation or a role change takes effect on the next request.

Who an account belongs to. Nothing proves that a person owns an email address: setting an account's
password proves only that one held some invitation for it. So an account without a password belongs
to nobody yet, and a membership counts (for a login, for the organizations a login names) only once
the account's password was proven for that membership (`accepted_at`):
- the first password is set with the invitation issued together with a membership an operator made
  without one (`drippulse orgs create --admin-email`, `users create`), or by accepting an invitation
  for an email that has no account yet, which makes the account;
- every other invitation (another organization's, or one for an account still without a password)
  is accepted with the password the account already has, and never changes it;
- an operator who gives a password sets it, and that membership counts at once.
An admin holding an invitation for someone else's email therefore reaches no membership but their
own organization's, and learns no more than that the email has an account (an invitation for an
email without one makes it); a refused password is the same answer, after the same work, whether or
not the account has a password, and counts against the login throttle.

A password check (Argon2, slow on purpose and queued behind others) runs between transactions: what
it is checked against is read in one, and the session is made in another, which finds the account
as the check left it or refuses. So no login or acceptance holds a database connection, or a row
lock, while it waits for Argon2.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane import audit
from api.control_plane.actors import Actor, Scope
from api.control_plane.database import Database
from api.control_plane.ids import new_id
from api.control_plane.rows import newest_first, newest_first_query
from api.control_plane.tables import Invitation, Membership, Session, User
from api.problems import Problem, not_found
from api.security import (
    INVITATION_PREFIX,
    SESSION_PREFIX,
    hash_password,
    hash_token,
    needs_rehash,
    new_token,
    password_matches,
)


@dataclass(frozen=True)
class LoggedIn:
    session_row: Session
    token: str = field(repr=False)
    user: User
    membership: Membership


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _now() -> datetime:
    return datetime.now(UTC)


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == normalize_email(email)))


async def _account(session: AsyncSession, email: str, name: str) -> tuple[User, bool]:
    """The user with this email, locked until the transaction ends, and whether this call made it
    (without a password). Of two first acceptances for one new email at once, the second waits for
    the first's account and then finds it, password set."""
    made = await session.scalar(
        insert(User)
        .values(id=new_id("usr"), email=normalize_email(email), name=name, active=True)
        .on_conflict_do_nothing(index_elements=[User.email])
        .returning(User.id)
    )
    user = (await session.scalars(select(User).where(User.email == normalize_email(email)).with_for_update())).one()
    return user, made is not None


async def _join(session: AsyncSession, org_id: str, user: User, roles: list[str], actor: Actor) -> Membership:
    """Adds the membership, or reactivates a deactivated one with these roles."""
    membership = await session.get(Membership, (org_id, user.id), with_for_update=True)
    if membership is not None and membership.active:
        raise Problem(409, "already-member", "Already a member", f"{user.email} is already a member")
    before = audit.snapshot(membership) if membership is not None else None
    if membership is None:
        membership = Membership(org_id=org_id, user_id=user.id, roles=roles, active=True)
        session.add(membership)
    else:
        membership.roles, membership.active, membership.deactivated_at = roles, True, None
    await session.flush()
    after = {**audit.snapshot(membership), "email": user.email}
    audit.record(session, org_id, actor, "member.join", ("user", user.id), before, after)
    return membership


async def add_member(
    session: AsyncSession, org_id: str, actor: Actor, email: str, name: str, roles: list[str], password: str | None
) -> tuple[User, str | None]:
    """An operator's way in (`drippulse users create`, `orgs create --admin-email`). With a password,
    the operator sets the account's and the person may log in at once. Without one, the membership
    waits for the person: the answer carries its invitation, with which they set the account's first
    password, or prove the one it has."""
    user, _ = await _account(session, email, name)
    membership = await _join(session, org_id, user, roles, actor)
    if password is not None:
        user.password_hash = await hash_password(password)
        membership.accepted_at = _now()
        audit.record(session, org_id, actor, "user.set_password", ("user", user.id), after={"password": "set"})
        return user, None
    _, token = await invite(session, Scope(org_id), actor, email, name, roles, timedelta(days=7), member=user)
    return user, token


async def invite(
    session: AsyncSession,
    scope: Scope,
    actor: Actor,
    email: str,
    name: str,
    roles: list[str],
    ttl: timedelta,
    member: User | None = None,
) -> tuple[Invitation, str]:
    """An invitation token (shown once) with which the invitee joins. `member` is the account of the
    membership an operator just made: the invitation is that membership's, which alone may set the
    account's first password."""
    if member is None:
        existing = await user_by_email(session, email)
        membership = await session.get(Membership, (scope.org_id, existing.id)) if existing else None
        if membership is not None and membership.active:
            raise Problem(409, "already-member", "Already a member", f"{email} is already a member")
    token = new_token(INVITATION_PREFIX)
    invitation = Invitation(
        id=new_id("inv"),
        org_id=scope.org_id,
        email=normalize_email(email),
        name=name,
        roles=roles,
        token_hash=token.hash,
        invited_by=actor.label,
        user_id=member.id if member is not None else None,
        expires_at=_now() + ttl,
    )
    session.add(invitation)
    await session.flush()
    await session.refresh(invitation)
    audit.record(
        session,
        scope.org_id,
        actor,
        "invitation.create",
        ("invitation", invitation.id),
        after=audit.snapshot(invitation),
    )
    return invitation, token.secret


async def list_invitations(
    session: AsyncSession, org_id: str, limit: int, after: tuple[datetime, str] | None
) -> list[Invitation]:
    """Pending ones (not accepted, not revoked), newest first."""
    query = select(Invitation).where(
        Invitation.org_id == org_id, Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None)
    )
    return await newest_first(session, query, Invitation.created_at, Invitation.id, limit, after)


async def revoke_invitation(session: AsyncSession, scope: Scope, actor: Actor, invitation_id: str) -> Invitation:
    invitation = await session.scalar(
        select(Invitation).where(Invitation.org_id == scope.org_id, Invitation.id == invitation_id).with_for_update()
    )
    if invitation is None or invitation.accepted_at is not None or invitation.revoked_at is not None:
        raise not_found("invitation", invitation_id)
    before = audit.snapshot(invitation)
    invitation.revoked_at = _now()
    audit.record(
        session,
        scope.org_id,
        actor,
        "invitation.revoke",
        ("invitation", invitation_id),
        before,
        audit.snapshot(invitation),
    )
    return invitation


def _invalid_invitation() -> Problem:
    return Problem(401, "invalid-invitation", "Invalid invitation", "the invitation is unknown, used or revoked")


async def _pending_invitation(session: AsyncSession, token: str, lock: bool) -> Invitation:
    query = select(Invitation).where(Invitation.token_hash == hash_token(token))
    invitation = await session.scalar(query.with_for_update() if lock else query)
    if invitation is None or invitation.revoked_at is not None or invitation.accepted_at is not None:
        raise _invalid_invitation()
    if invitation.expires_at <= _now():
        raise Problem(401, "invitation-expired", "Invitation expired", "ask an admin for a new invitation")
    return invitation


@dataclass(frozen=True)
class _Acceptance:
    """What accepting an invitation will do with the password, as read before the check: set the
    account's first password (a new account, or the one the invitation's membership was made for),
    or prove the password the account has (`password_hash`, None for none: the check fails after
    the same work)."""

    email: str
    sets_password: bool
    password_hash: str | None = field(repr=False)


def _refuse_a_left_membership(invitation: Invitation, membership: Membership | None) -> None:
    """An operator's invitation is its membership's: once that is deactivated, accepting it never
    undoes that."""
    if invitation.user_id is not None and (membership is None or not membership.active):
        raise _invalid_invitation()


def _acceptance(invitation: Invitation, user: User | None, made: bool) -> _Acceptance:
    sets = user is None or (user.active and user.password_hash is None and (made or invitation.user_id == user.id))
    stored = user.password_hash if user is not None and user.active else None
    return _Acceptance(invitation.email, sets, None if sets else stored)


async def accept_invitation(
    database: Database,
    token: str,
    name: str | None,
    password: str,
    ttl: timedelta,
    before_the_check: Callable[[str], Awaitable[None]],
) -> LoggedIn:
    """The invitee joins with a password proven for this membership (see the module's docstring),
    and is logged in to it. `before_the_check` is given the invitation's email once, before any
    password work (the login throttle counts the attempt). If the account changed between the read
    and the write (two first acceptances of one new email at once: the second finds the first's
    password), the acceptance is worked out again from the account as it now is."""
    counted = False
    for _ in range(3):
        async with database.transaction() as session:
            invitation = await _pending_invitation(session, token, lock=False)
            user = await user_by_email(session, invitation.email)
            membership = await session.get(Membership, (invitation.org_id, user.id)) if user is not None else None
            _refuse_a_left_membership(invitation, membership)
            planned = _acceptance(invitation, user, made=False)
        if not counted:
            await before_the_check(planned.email)
            counted = True
        new_hash = await hash_password(password) if planned.sets_password else None
        if new_hash is None and not await password_matches(planned.password_hash, password):
            raise Problem(401, "bad-credentials", "Wrong password", "an existing account accepts with its own password")
        async with database.transaction() as session:
            accepted = await _accept(session, token, name, planned, new_hash, ttl)
        if accepted is not None:
            return accepted
    raise Problem(409, "conflict", "Changed meanwhile", "the account changed while the invitation was accepted; retry")


async def _accept(
    session: AsyncSession, token: str, name: str | None, planned: _Acceptance, new_hash: str | None, ttl: timedelta
) -> LoggedIn | None:
    """Accepts, with the rows locked, if the account is still as the password was checked against
    (None otherwise, and nothing written)."""
    invitation = await _pending_invitation(session, token, lock=True)
    user, made = await _account(session, invitation.email, name or invitation.name)
    membership = await session.get(Membership, (invitation.org_id, user.id), with_for_update=True)
    _refuse_a_left_membership(invitation, membership)
    if _acceptance(invitation, user, made) != planned:
        return None
    if new_hash is not None:
        user.password_hash = new_hash
        if name:
            user.name = name
    actor = Actor("user", user.id, user.email, user.id)
    if membership is None or not membership.active:
        membership = await _join(session, invitation.org_id, user, list(invitation.roles), actor)
    now = _now()
    membership.accepted_at = membership.accepted_at or now
    invitation.accepted_at = now
    audit.record(
        session,
        invitation.org_id,
        actor,
        "invitation.accept",
        ("invitation", invitation.id),
        after={"accepted_at": invitation.accepted_at},
    )
    return await _start_session(session, user, membership, ttl)


async def list_members(
    session: AsyncSession, org_id: str, limit: int, after: tuple[datetime, str] | None
) -> list[tuple[User, Membership]]:
    """Newest first."""
    query = select(User, Membership).join(Membership, Membership.user_id == User.id).where(Membership.org_id == org_id)
    rows = await session.execute(newest_first_query(query, Membership.created_at, Membership.user_id, limit, after))
    return [(user, membership) for user, membership in rows]


async def get_member(session: AsyncSession, org_id: str, user_id: str, lock: bool = False) -> tuple[User, Membership]:
    query = (
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org_id, User.id == user_id)
    )
    row = (await session.execute(query.with_for_update(of=Membership) if lock else query)).first()
    if row is None:
        raise not_found("member", user_id)
    user, membership = row
    return user, membership


async def _keep_an_admin(session: AsyncSession, org_id: str, user_id: str) -> None:
    """An organization never loses its last active admin, or nobody could manage it any more."""
    others = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(
            Membership.org_id == org_id,
            Membership.user_id != user_id,
            Membership.active,
            Membership.roles.contains(["admin"]),
        )
    )
    if not others:
        raise Problem(409, "last-admin", "Last admin", "the organization must keep at least one active admin")


async def set_roles(session: AsyncSession, scope: Scope, actor: Actor, user_id: str, roles: list[str]) -> Membership:
    user, membership = await get_member(session, scope.org_id, user_id, lock=True)
    if "admin" in membership.roles and "admin" not in roles and membership.active:
        await _keep_an_admin(session, scope.org_id, user_id)
    before = audit.snapshot(membership)
    membership.roles = roles
    await session.flush()
    audit.record(
        session, scope.org_id, actor, "member.set_roles", ("user", user.id), before, audit.snapshot(membership)
    )
    return membership


async def deactivate(session: AsyncSession, scope: Scope, actor: Actor, user_id: str) -> Membership:
    """Stops the person's sessions in this organization and the keys they issued here, at once."""
    user, membership = await get_member(session, scope.org_id, user_id, lock=True)
    if not membership.active:
        return membership
    if "admin" in membership.roles:
        await _keep_an_admin(session, scope.org_id, user_id)
    before = audit.snapshot(membership)
    membership.active, membership.deactivated_at = False, _now()
    await session.execute(
        update(Session)
        .where(Session.org_id == scope.org_id, Session.user_id == user_id, Session.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    await session.flush()
    audit.record(
        session, scope.org_id, actor, "member.deactivate", ("user", user.id), before, audit.snapshot(membership)
    )
    return membership


async def reactivate(session: AsyncSession, scope: Scope, actor: Actor, user_id: str) -> Membership:
    user, membership = await get_member(session, scope.org_id, user_id, lock=True)
    if membership.active:
        return membership
    before = audit.snapshot(membership)
    membership.active, membership.deactivated_at = True, None
    await session.flush()
    audit.record(
        session, scope.org_id, actor, "member.reactivate", ("user", user.id), before, audit.snapshot(membership)
    )
    return membership


@dataclass(frozen=True)
class Proven:
    """An account whose password a caller proved, as it was checked; and the password hashed again
    when Argon2's parameters have changed since it was stored."""

    user_id: str
    password_hash: str = field(repr=False)
    rehashed: str | None = field(repr=False)


async def prove_password(database: Database, email: str, password: str) -> Proven:
    """The account whose password this is. The same 401, after the same work, for an unknown email,
    an account without a password, a wrong password and a disabled account."""
    async with database.transaction() as session:
        user = await user_by_email(session, email)
        user_id, stored = (user.id, user.password_hash) if user is not None and user.active else (None, None)
    if not await password_matches(stored, password) or user_id is None or stored is None:
        raise Problem(401, "bad-credentials", "Login failed", "unknown email or wrong password")
    return Proven(user_id, stored, await hash_password(password) if needs_rehash(stored) else None)


async def log_in(session: AsyncSession, proven: Proven, org_id: str | None, ttl: timedelta) -> LoggedIn:
    """A new session (token shown once) in one of the organizations whose membership is active and
    accepted, for an account still as its password was proven (active, the same password). Only a
    caller who proved the password comes here, so naming those organizations when the person must
    choose one discloses nothing; a membership still waiting for its invitation is never named."""
    user = await session.get(User, proven.user_id, with_for_update=True)
    if user is None or not user.active or user.password_hash != proven.password_hash:
        raise Problem(401, "bad-credentials", "Login failed", "unknown email or wrong password")
    if proven.rehashed is not None:
        user.password_hash = proven.rehashed
    query = select(Membership).where(
        Membership.user_id == user.id, Membership.active, Membership.accepted_at.is_not(None)
    )
    if org_id is not None:
        query = query.where(Membership.org_id == org_id)
    memberships = list((await session.scalars(query)).all())
    if not memberships:
        raise Problem(401, "bad-credentials", "Login failed", "no active membership in that organization")
    if len(memberships) > 1:
        orgs = sorted(m.org_id for m in memberships)
        raise Problem(
            422,
            "organization-required",
            "Organization required",
            "you belong to several organizations; pass org_id",
            errors=[{"field": "$.org_id", "message": f"one of {', '.join(orgs)}"}],
        )
    return await _start_session(session, user, memberships[0], ttl)


async def _start_session(session: AsyncSession, user: User, membership: Membership, ttl: timedelta) -> LoggedIn:
    token, csrf = new_token(SESSION_PREFIX), new_token("")
    row = Session(
        id=new_id("ses"),
        token_hash=token.hash,
        csrf_token=csrf.secret,
        user_id=user.id,
        org_id=membership.org_id,
        expires_at=_now() + ttl,
    )
    session.add(row)
    await session.flush()
    actor = Actor("user", user.id, user.email, user.id)
    audit.record(
        session, membership.org_id, actor, "session.create", ("session", row.id), after={"expires_at": row.expires_at}
    )
    return LoggedIn(row, token.secret, user, membership)


async def logout(session: AsyncSession, org_id: str, actor: Actor, session_id: str) -> None:
    row = await session.get(Session, session_id, with_for_update=True)
    if row is None or row.org_id != org_id or row.revoked_at is not None:
        return
    row.revoked_at = _now()
    audit.record(session, org_id, actor, "session.revoke", ("session", session_id), after={"revoked": True})
