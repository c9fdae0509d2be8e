"""CRM connectors: how one CRM command becomes HTTP requests to one kind of CRM.

- `rest`: a generic REST endpoint; the command is POSTed as JSON to `{base_url}/commands`.
- `hubspot`: shaped like HubSpot's CRM v3 objects API. A lead update is an upsert by email: search
  the contact (`POST /crm/v3/objects/contacts/search`), then PATCH its properties, or create it when
  no contact has that email; without an email the lead id is the contact's `drippulse_lead_id`
  property. Tags land in the `drippulse_tags` property; tasks are created as task objects.

Every request carries the command id as `Idempotency-Key` and the connection's token as a bearer
credential. A connector returns the response that decides the outcome; retrying and rate limiting
are the applier's job.

Every value that goes into a URL (a lead id, a contact id the CRM answered) is one percent-encoded
path segment or query value (`url_path`): a lead id is the customer's data, and unencoded, `../..`
would reach another endpoint of the CRM with the connection's token, and `?`/`#` another contact.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import orjson

from streams.delivery.outbound_http import Answer, NoAnswer, OutboundHttp
from streams.delivery.ssrf_guard import UnsafeDestination

HEADERS = {"user-agent": "DripPulse-CRM/0.1", "content-type": "application/json"}
"""Sent with every CRM request (`OutboundHttp` default headers)."""
MAX_RESPONSE_BYTES = 1 << 20
"""A CRM answer is read up to this much; a longer one is cut (its JSON then reads as no body)."""


@dataclass(frozen=True, slots=True)
class CrmResponse:
    status_code: int | None
    """None when no answer came (timeout, connection refused, unsafe destination)."""
    error: str
    retry_after: str | None = None
    object_id: str | None = None
    body: Any = None
    timed_out: bool = False
    """No answer within the timeout: asking again at once would most likely wait as long."""
    permanent: bool = False
    """No request could be made for this command (see `UnaddressableValue`): retrying cannot help."""


class UnaddressableValue(ValueError):
    """A value that cannot be one URL path segment: empty, or a dot segment (`.`, `..`, also
    percent-encoded), which every URL parser removes, addressing the collection's parent."""


def url_path(*segments: str, **query: str) -> str:
    """`/seg/seg?k=v` with each segment and query value percent-encoded whole (`/` and `%` too)."""
    encoded = []
    for segment in segments:
        if segment.lower().replace("%2e", ".") in ("", ".", ".."):
            raise UnaddressableValue(f"{segment!r} cannot be a path segment")
        encoded.append(quote(segment, safe=""))
    return "/" + "/".join(encoded) + ("?" + urlencode(query, quote_via=quote) if query else "")


class CrmHttp:
    """One connection's view of the HTTP client: its base URL, its token, its rate limit (`throttle`
    waits for a token before every request)."""

    def __init__(
        self, http: OutboundHttp, base_url: str, token: str | None, throttle: Callable[[], Awaitable[None]]
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._throttle = throttle

    async def call(self, method: str, path: str, idempotency_key: str, body: Any) -> CrmResponse:
        url = f"{self._base_url}{path}"
        headers = {"idempotency-key": idempotency_key}
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        try:
            await self._throttle()
            answer = await self._http.request(method, url, orjson.dumps(body), headers, MAX_RESPONSE_BYTES)
        except UnsafeDestination as exc:
            return CrmResponse(None, f"unsafe destination: {exc}")
        except TimeoutError:
            return CrmResponse(None, "no answer within the timeout", timed_out=True)
        except NoAnswer as exc:
            return CrmResponse(None, str(exc))
        text = answer.body.decode(errors="replace")
        error = "" if 200 <= answer.status < 300 else f"HTTP {answer.status}: {text[:300]}"
        return CrmResponse(answer.status, error, answer.retry_after, None, _json_or_none(answer))


def _json_or_none(answer: Answer) -> Any:
    if "json" not in answer.content_type or not answer.body:
        return None
    try:
        return orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return None


class Connector(Protocol):
    async def apply(self, http: CrmHttp, command: dict[str, Any]) -> CrmResponse: ...


class RestConnector:
    """`POST {base_url}/commands` with the command as JSON; the CRM's object id is the `id` of a JSON
    answer, when it gives one."""

    async def apply(self, http: CrmHttp, command: dict[str, Any]) -> CrmResponse:
        body = {k: command[k] for k in ("command_id", "operation", "lead_id", "email", "properties", "execution_id")}
        return _with_object_id(await http.call("POST", url_path("commands"), command["command_id"], body))


class HubSpotConnector:
    """Shaped like HubSpot's CRM v3 objects API; the CRM's object id is the `id` of the contact it
    patched or created, or of the task it created."""

    CONTACTS = ("crm", "v3", "objects", "contacts")

    async def apply(self, http: CrmHttp, command: dict[str, Any]) -> CrmResponse:
        try:
            return await self._apply(http, command)
        except UnaddressableValue as exc:
            return CrmResponse(None, f"not sent: {exc}", permanent=True)

    async def _apply(self, http: CrmHttp, command: dict[str, Any]) -> CrmResponse:
        operation = command["operation"]
        if operation == "create_task":
            return await self._create_task(http, command)
        properties = dict(command["properties"])
        if operation == "add_tag":
            properties = {"drippulse_tags": properties.get("tag", "")}
        return await self._upsert_contact(http, command, properties)

    async def _upsert_contact(self, http: CrmHttp, command: dict[str, Any], properties: dict[str, str]) -> CrmResponse:
        key = command["command_id"]
        email = command.get("email")
        if not email:
            patch = url_path(*self.CONTACTS, command["lead_id"], idProperty="drippulse_lead_id")
            return _with_object_id(await http.call("PATCH", patch, key, {"properties": properties}))
        search = {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]}]}
        found = await http.call("POST", url_path(*self.CONTACTS, "search"), key, search)
        if found.status_code is None or not 200 <= found.status_code < 300:
            return found
        results = (found.body or {}).get("results") or []
        if results:
            patch = url_path(*self.CONTACTS, str(results[0]["id"]))
            return _with_object_id(await http.call("PATCH", patch, key, {"properties": properties}))
        created = {"properties": {**properties, "email": email, "drippulse_lead_id": command["lead_id"]}}
        return _with_object_id(await http.call("POST", url_path(*self.CONTACTS), key, created))

    async def _create_task(self, http: CrmHttp, command: dict[str, Any]) -> CrmResponse:
        properties = command["properties"]
        task = {
            "properties": {
                "hs_task_subject": properties.get("title", ""),
                "hs_task_body": f"DripPulse lead {command['lead_id']}, due in {properties.get('due_in_days')} days",
                "hubspot_owner_id": properties.get("assignee", ""),
            }
        }
        return _with_object_id(
            await http.call("POST", url_path("crm", "v3", "objects", "tasks"), command["command_id"], task)
        )


def _with_object_id(response: CrmResponse) -> CrmResponse:
    """The `id` of the JSON object the CRM answered (a number becomes its decimal text)."""
    found = response.body.get("id") if isinstance(response.body, dict) else None
    object_id = str(found) if isinstance(found, str | int) and not isinstance(found, bool) else None
    return replace(response, object_id=object_id)


CONNECTORS: dict[str, Connector] = {"rest": RestConnector(), "hubspot": HubSpotConnector()}
