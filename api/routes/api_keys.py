"""API keys of the caller's organization. The secret is returned once, at creation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from api.deps import Admin, Store
from api.models import ApiKeyCreate
from api.problems import not_found

router = APIRouter(prefix="/api/v1/api_keys", tags=["api keys"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_api_key(body: ApiKeyCreate, principal: Admin, store: Store) -> dict[str, Any]:
    key = await store.create_api_key(principal.org_id, body.name, body.role)
    return {"id": key.key_id, "name": body.name, "role": body.role, "key": key.secret}


@router.get("")
async def list_api_keys(principal: Admin, store: Store) -> dict[str, Any]:
    return {"items": await store.list_api_keys(principal.org_id)}


@router.delete("/{key_id}")
async def revoke_api_key(key_id: str, principal: Admin, store: Store) -> dict[str, Any]:
    revoked = await store.revoke_api_key(principal.org_id, key_id)
    if revoked is None:
        raise not_found("api key", key_id)
    return revoked
