"""Sessions for people: log in (a bearer token for API use, and a cookie for the dashboard), log out,
who am I, and accepting an invitation."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.control_plane import people
from api.deps import SESSION_COOKIE, Account, Db, PublicRoute, SettingsDep, get_login_throttle
from api.login_throttle import LoginThrottle
from api.models import required_ms
from api.permissions import Role
from api.problems import responses
from api.security import password_work
from drippulse.settings import Settings

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(_Body):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    org_id: str | None = Field(default=None, description="Needed when the person belongs to several organizations.")


class AcceptInvitation(_Body):
    token: str = Field(min_length=1, max_length=200, description="The `dpi_…` token from the invitation.")
    password: str = Field(
        min_length=12, max_length=1024, description="A new user's password, or an existing user's own password."
    )
    name: str | None = Field(default=None, max_length=200)


class UserOut(BaseModel):
    id: str
    email: str
    name: str


class SessionOut(BaseModel):
    token: str = Field(description="`Authorization: Bearer <token>`; also set as the dp_session cookie. Shown once.")
    csrf_token: str = Field(description="Send as X-CSRF-Token with cookie-authenticated requests that change things.")
    expires_at_ms: int
    org_id: str
    roles: list[Role]
    user: UserOut


class WhoAmI(BaseModel):
    org_id: str
    kind: Literal["user", "api_key"]
    id: str = Field(description="The user id, or the API key id.")
    label: str
    roles: list[Role]
    project_id: str | None = Field(description="Set for a project-scoped key: it sees only this project.")
    agent: bool


def _session_out(logged_in: people.LoggedIn, response: Response, settings: Settings) -> SessionOut:
    login, user = logged_in.session_row, logged_in.user
    response.set_cookie(
        SESSION_COOKIE,
        logged_in.token,
        max_age=settings.session_ttl_s,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )
    return SessionOut(
        token=logged_in.token,
        csrf_token=login.csrf_token,
        expires_at_ms=required_ms(login.expires_at),
        org_id=login.org_id,
        roles=[Role(r) for r in logged_in.membership.roles],
        user=UserOut(id=user.id, email=user.email, name=user.name),
    )


Throttle = Annotated[LoginThrottle, Depends(get_login_throttle)]


@router.post("/login", response_model=SessionOut, responses=responses(401, 422, 429, 503))
async def login(
    body: LoginRequest, _: PublicRoute, database: Db, settings: SettingsDep, throttle: Throttle, response: Response
) -> SessionOut:
    """A session in one organization, valid for DRIPPULSE_SESSION_TTL_S. Ten attempts for an email
    within 15 minutes that do not prove its password refuse it (429) until the window ends; an attempt
    is counted before its password is checked. With several organizations, a proven password gets
    the list to choose from (422). When too many password checks are already waiting, 503 `busy`
    with `Retry-After`, before anything is counted."""
    with password_work():
        await throttle.attempt(body.email)
        proven = await people.prove_password(database, body.email, body.password)
        await throttle.succeeded(body.email)
        async with database.transaction() as session:
            logged_in = await people.log_in(session, proven, body.org_id, timedelta(seconds=settings.session_ttl_s))
    return _session_out(logged_in, response, settings)


@router.post("/invitations/accept", response_model=SessionOut, responses=responses(401, 409, 422, 429, 503))
async def accept_invitation(
    body: AcceptInvitation,
    _: PublicRoute,
    database: Db,
    settings: SettingsDep,
    throttle: Throttle,
    response: Response,
) -> SessionOut:
    """Joins the organization of the invitation and logs in to it. An invitation for an email without
    an account makes one with this password; one for an existing account takes that account's
    password (counted like a login's), except the invitation an operator's `orgs create
    --admin-email` or `users create` printed, which sets a first password."""
    with password_work():
        logged_in = await people.accept_invitation(
            database, body.token, body.name, body.password, timedelta(seconds=settings.session_ttl_s), throttle.attempt
        )
    await throttle.succeeded(logged_in.user.email)
    return _session_out(logged_in, response, settings)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=responses(401, 403))
async def logout(principal: Account, database: Db) -> Response:
    """Ends this session (a key has no session: nothing to end)."""
    if principal.session_id is not None:
        async with database.transaction() as session:
            await people.logout(session, principal.org_id, principal.actor, principal.session_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me", response_model=WhoAmI, responses=responses(401, 403))
async def who_am_i(principal: Account) -> WhoAmI:
    kind: Literal["user", "api_key"] = "user" if principal.is_person else "api_key"
    return WhoAmI(
        org_id=principal.org_id,
        kind=kind,
        id=principal.actor.id,
        label=principal.actor.label,
        roles=sorted(principal.roles),
        project_id=principal.project_id,
        agent=principal.agent,
    )
