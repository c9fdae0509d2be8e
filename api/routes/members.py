"""People in the caller's organization: members with their roles, invitations, deactivation."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from api.control_plane import people
from api.control_plane.tables import Invitation, Membership, User
from api.cursors import PageCursor, PageLimit, after_cursor, row_page
from api.deps import Db, MembersManage, SettingsDep
from api.models import Page, ms, required_ms
from api.permissions import Role
from api.problems import responses

router = APIRouter(prefix="/api/v1/members", tags=["members"], responses=responses(401, 403, 422))


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Roles = Field(min_length=1, max_length=4, description="One or more of admin, editor, viewer, approver.")


class InvitationCreate(_Body):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    name: str = Field(default="", max_length=200)
    roles: list[Role] = Roles


class RolesUpdate(_Body):
    roles: list[Role] = Roles


class MemberOut(BaseModel):
    user_id: str
    email: str
    name: str
    roles: list[Role]
    active: bool
    joined_at_ms: int
    accepted_at_ms: int | None = Field(
        description="When the person proved their password for this membership; null while its invitation waits "
        "(they cannot log in to this organization yet)."
    )
    deactivated_at_ms: int | None


class InvitationOut(BaseModel):
    id: str
    email: str
    name: str
    roles: list[Role]
    invited_by: str
    created_at_ms: int
    expires_at_ms: int


class InvitationCreated(InvitationOut):
    token: str = Field(description="Shown once: the invitee accepts with POST /api/v1/auth/invitations/accept.")


def _member(user: User, membership: Membership) -> MemberOut:
    return MemberOut(
        user_id=user.id,
        email=user.email,
        name=user.name,
        roles=[Role(r) for r in membership.roles],
        active=membership.active,
        joined_at_ms=required_ms(membership.created_at),
        accepted_at_ms=ms(membership.accepted_at),
        deactivated_at_ms=ms(membership.deactivated_at),
    )


def _invitation(invitation: Invitation) -> InvitationOut:
    return InvitationOut(
        id=invitation.id,
        email=invitation.email,
        name=invitation.name,
        roles=[Role(r) for r in invitation.roles],
        invited_by=invitation.invited_by,
        created_at_ms=required_ms(invitation.created_at),
        expires_at_ms=required_ms(invitation.expires_at),
    )


def _distinct(roles: list[Role]) -> list[str]:
    return sorted({role.value for role in roles})


@router.get("", response_model=Page[MemberOut], responses=responses(400))
async def list_members(
    principal: MembersManage, database: Db, limit: PageLimit = 100, cursor: PageCursor = None
) -> Page[MemberOut]:
    """Newest first."""
    async with database.transaction() as session:
        found = await people.list_members(session, principal.org_id, limit + 1, after_cursor(cursor))
    return row_page(found, limit, lambda row: (row[1].created_at, row[0].id), lambda row: _member(*row))


@router.get("/invitations", response_model=Page[InvitationOut], responses=responses(400))
async def list_invitations(
    principal: MembersManage, database: Db, limit: PageLimit = 100, cursor: PageCursor = None
) -> Page[InvitationOut]:
    """Invitations not yet accepted or revoked (expired ones included, with their expiry), newest first."""
    async with database.transaction() as session:
        found = await people.list_invitations(session, principal.org_id, limit + 1, after_cursor(cursor))
    return row_page(found, limit, lambda i: (i.created_at, i.id), _invitation)


@router.post(
    "/invitations", status_code=status.HTTP_201_CREATED, response_model=InvitationCreated, responses=responses(409)
)
async def invite(
    body: InvitationCreate, principal: MembersManage, database: Db, settings: SettingsDep
) -> InvitationCreated:
    """The token is in this response only; it expires after DRIPPULSE_INVITATION_TTL_S."""
    async with database.transaction() as session:
        invitation, token = await people.invite(
            session,
            principal.scope,
            principal.actor,
            body.email,
            body.name,
            _distinct(body.roles),
            timedelta(seconds=settings.invitation_ttl_s),
        )
    return InvitationCreated(**_invitation(invitation).model_dump(), token=token)


@router.delete("/invitations/{invitation_id}", response_model=InvitationOut, responses=responses(404))
async def revoke_invitation(invitation_id: str, principal: MembersManage, database: Db) -> InvitationOut:
    async with database.transaction() as session:
        return _invitation(await people.revoke_invitation(session, principal.scope, principal.actor, invitation_id))


@router.get("/{user_id}", response_model=MemberOut, responses=responses(404))
async def get_member(user_id: str, principal: MembersManage, database: Db) -> MemberOut:
    async with database.transaction() as session:
        return _member(*await people.get_member(session, principal.org_id, user_id))


@router.put("/{user_id}/roles", response_model=MemberOut, responses=responses(404, 409))
async def set_roles(user_id: str, body: RolesUpdate, principal: MembersManage, database: Db) -> MemberOut:
    """Takes effect on the member's next request. The last active admin keeps the admin role."""
    async with database.transaction() as session:
        await people.set_roles(session, principal.scope, principal.actor, user_id, _distinct(body.roles))
        return _member(*await people.get_member(session, principal.org_id, user_id))


@router.post("/{user_id}/deactivate", response_model=MemberOut, responses=responses(404, 409))
async def deactivate(user_id: str, principal: MembersManage, database: Db) -> MemberOut:
    """The member's sessions here, and the API keys they issued here, stop working at once."""
    async with database.transaction() as session:
        await people.deactivate(session, principal.scope, principal.actor, user_id)
        return _member(*await people.get_member(session, principal.org_id, user_id))


@router.post("/{user_id}/reactivate", response_model=MemberOut, responses=responses(404))
async def reactivate(user_id: str, principal: MembersManage, database: Db) -> MemberOut:
    async with database.transaction() as session:
        await people.reactivate(session, principal.scope, principal.actor, user_id)
        return _member(*await people.get_member(session, principal.org_id, user_id))
